"""Tests of the importance-sampling handlers in zoo/poutine (particles, log weights, resampling,
score function)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from zoo.infer.importance import particle_log_weights
from zoo.models.ppca import ExactPosteriorGuide
from zoo.poutine import (
    LogWeightMessenger,
    ResampleMessenger,
    gather_particles,
    log_weight,
    max_plate_nesting,
    particles,
    score_function,
)
from zoo.registry import get_guide


@pytest.fixture
def ppca(make_ppca):
    return make_ppca(input_dim=5, noise_scale=0.7, seed=1, batch_size=4)


def test_particles_add_a_leading_dim(ppca):
    model, x = ppca
    assert max_plate_nesting(model, ExactPosteriorGuide(model), x) == 1
    with particles(num_particles=7, max_plate_nesting=1):
        trace = poutine.trace(model).get_trace(x)
    assert trace.nodes["z"]["value"].shape == (7, 4, 2)

    def global_model():
        return pyro.sample("theta", dist.Normal(0.0, 1.0))

    assert particles(global_model, num_particles=3, max_plate_nesting=1)().shape == (3, 1)
    with pytest.raises(ValueError, match="num_particles"):
        particles(num_particles=0, max_plate_nesting=1)


def test_log_weights_per_data_point_match_a_loop(ppca):
    """Weights of a batch of 4 points equal the weights computed one data point at a time."""
    model, x = ppca
    guide = get_guide("diagonal_normal", model, hidden_dims=(8,))
    k = 6
    with torch.no_grad():
        weights, guide_trace = particle_log_weights(model, guide, (x,), {}, k, 1)
    z = guide_trace.nodes["z"]["value"]  # [K, 4, 2]
    assert weights.local.shape == (k, 4) and not weights.has_global
    for n in range(4):
        xn = x[n : n + 1]
        with torch.no_grad():
            loc, scale = guide.heads["z"](guide.hidden(xn))  # [1, 2]
            zn = z[:, n]  # [K, 2]
            log_q = dist.Normal(loc, scale).to_event(1).log_prob(zn)
            log_prior = dist.Normal(0.0, 1.0).expand([2]).to_event(1).log_prob(zn)
            mean = zn @ model.weight.T + model.bias
            log_lik = dist.Normal(mean, model.noise_scale).to_event(1).log_prob(xn)
        torch.testing.assert_close(weights.local[:, n], log_prior + log_lik - log_q)


def test_exact_posterior_weights_equal_evidence(ppca):
    model, x = ppca
    with torch.no_grad():
        weights, _ = particle_log_weights(model, ExactPosteriorGuide(model), (x,), {}, 50, 1)
        exact = model.log_marginal(x)  # [4]
    torch.testing.assert_close(weights.local, exact.expand(50, 4), atol=2e-4, rtol=0)


def test_subsample_scale_is_recorded_not_applied(ppca):
    model, x = ppca
    guide = ExactPosteriorGuide(model)
    with torch.no_grad():
        w_full, _ = particle_log_weights(model, guide, (x, 100), {}, 3, 1)
    assert w_full.data_scale == 25.0
    torch.testing.assert_close(w_full.local, model.log_marginal(x).expand(3, 4), atol=2e-4, rtol=0)


def test_global_sites_are_weighted_per_particle():
    def model(x):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(theta, 1.0), obs=x)

    def guide(x):
        pyro.sample("theta", dist.Normal(0.5, 2.0))

    x = torch.tensor([0.3, -1.0, 2.0])
    with particles(num_particles=5, max_plate_nesting=1):
        guide_trace = poutine.trace(guide).get_trace(x)
        wrapped = log_weight(poutine.replay(model, trace=guide_trace), guide_trace=guide_trace,
                             num_particles=5, particle_dim=-2)
        wrapped(x)
    w = wrapped.msngr
    theta = guide_trace.nodes["theta"]["value"].reshape(5)
    expected_glob = dist.Normal(0.0, 1.0).log_prob(theta) - dist.Normal(0.5, 2.0).log_prob(theta)
    torch.testing.assert_close(w.glob, expected_glob)
    assert w.local.shape == (5, 3) and w.has_global
    expected = expected_glob + dist.Normal(theta[:, None], 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(w.total(), expected)


def test_guide_only_sites_are_subtracted():
    def model():
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        pyro.sample("aux", dist.Normal(0.0, 3.0))
        pyro.sample("z", dist.Normal(0.0, 1.0))

    trace = poutine.trace(guide).get_trace()
    with LogWeightMessenger(trace, 1, -1) as w:
        poutine.replay(model, trace=trace)()
    aux = trace.nodes["aux"]["value"]
    torch.testing.assert_close(w.total(), -dist.Normal(0.0, 3.0).log_prob(aux).reshape(1))


def test_resample_replays_the_chosen_particles(ppca):
    model, x = ppca
    k, n = 8, 5
    with torch.no_grad(), particles(num_particles=k, max_plate_nesting=1):
        guide_trace = poutine.trace(ExactPosteriorGuide(model, inflate=2.0)).get_trace(x)
    index = torch.randint(k, (n, 4))
    with torch.no_grad(), particles(num_particles=n, max_plate_nesting=1):
        with ResampleMessenger(guide_trace, index, particle_dim=-2):
            trace = poutine.trace(model).get_trace(x)
    z = guide_trace.nodes["z"]["value"]  # [K, 4, 2]
    z_new = trace.nodes["z"]["value"]  # [N, 4, 2]
    for j in range(n):
        for b in range(4):
            assert torch.equal(z_new[j, b], z[index[j, b], b])
    whole = torch.tensor([3, 3, 0])
    torch.testing.assert_close(gather_particles(z, 1, whole, -2), z[whole])
    with pytest.raises(ValueError, match="index must be"):
        ResampleMessenger(guide_trace, torch.zeros(2, 2, 2, dtype=torch.long), -2)


def test_score_function_handler_cuts_the_path(ppca):
    model, x = ppca
    guide = get_guide("householder", model, hidden_dims=(8,), num_flows=2)
    baseline = {"use_decaying_avg_baseline": True}
    trace = poutine.trace(score_function(guide, baseline=baseline)).get_trace(x)
    site = trace.nodes["z"]
    assert not site["fn"].has_rsample and not site["value"].requires_grad
    assert site["infer"]["baseline"] == baseline
    plain = poutine.trace(guide).get_trace(x).nodes["z"]
    assert plain["fn"].has_rsample and plain["value"].requires_grad
    only_other = poutine.trace(score_function(guide, sites=["w"])).get_trace(x).nodes["z"]
    assert only_other["fn"].has_rsample
