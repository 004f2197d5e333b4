"""Score-function (black-box) estimators: the forcing handler, gradient variance of each
estimator, and the Gaussian mixture with its categorical guide (zoo/infer/gradient_variance.py,
zoo/poutine/score_function_messenger.py, zoo/models/mixture.py, guides/categorical.py)."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, config_enumerate

from zoo.infer.gradient_variance import (
    compare_estimators,
    gradient_statistics,
    markdown_table,
    sample_gradients,
)
from zoo.infer.importance import log_likelihood
from zoo.models.mixture import GaussianMixture
from zoo.models.ppca import PPCA
from zoo.poutine import score_function
from zoo.registry import get_guide, list_guides

BASELINE = {"use_decaying_avg_baseline": True, "baseline_beta": 0.9}


@pytest.fixture
def ppca():
    pyro.set_rng_seed(0)
    model = PPCA(input_dim=4, latent_dim=2, noise_scale=0.7, seed=1)
    x = model(batch_size=6).detach()
    guide = get_guide("diagonal_normal", model, hidden_dims=(6,))
    return model, guide, x


@pytest.fixture
def gmm():
    pyro.set_rng_seed(0)
    model = GaussianMixture(input_dim=2, num_components=3, init_scale=2.0, seed=0)
    x = model(batch_size=16).detach()
    guide = get_guide("categorical", model, hidden_dims=(8,))
    return model, guide, x


def test_gradient_statistics_of_known_draws():
    torch.manual_seed(0)
    draws = torch.tensor([1.0, -2.0]) + torch.randn(4000, 2) * torch.tensor([1.0, 3.0])
    stats = gradient_statistics(draws)
    assert stats["total_variance"] == pytest.approx(10.0, rel=0.1)
    assert stats["mean_norm"] == pytest.approx(5**0.5, rel=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_statistics(draws[:1])


def test_score_function_is_unbiased_and_noisier(ppca):
    """The forced score-function gradient has the reparameterized gradient's mean (within 5
    standard errors per coordinate) and a larger variance; a baseline reduces it."""
    model, guide, x = ppca
    params = list(guide.parameters())
    n = 100
    rep = sample_gradients(Trace_ELBO(), model, guide, (x,), params=params, num_samples=n)
    sf = sample_gradients(TraceGraph_ELBO(), model, score_function(guide, baseline=BASELINE),
                          (x,), params=params, num_samples=n, warmup=20)
    se = (rep.var(0) / n + sf.var(0) / n).sqrt()
    assert ((rep.mean(0) - sf.mean(0)).abs() < 5 * se + 1e-6).all()
    results = compare_estimators(
        {
            "reparameterized": (Trace_ELBO(), guide),
            "score function + baseline": (TraceGraph_ELBO(),
                                          score_function(guide, baseline=BASELINE)),
            "score function": (TraceGraph_ELBO(), score_function(guide)),
        },
        model, (x,), params=params, num_samples=40,
    )
    var = [r["total_variance"] for r in results.values()]
    assert var[0] < var[1] < var[2], markdown_table(results)


def test_mixture_is_exact_and_fits_only_the_categorical_guide(gmm):
    model, guide, x = gmm
    assert list_guides(model) == ["categorical"]
    with pytest.raises(ValueError, match="categorical"):
        get_guide("diagonal_normal", model)
    # brute force over the 3 components
    joint = torch.stack([
        torch.log_softmax(model.mixture_logits, 0)[c]
        + torch.distributions.Normal(model.locs[c], model.scale).log_prob(x).sum(-1)
        for c in range(3)
    ], -1)
    torch.testing.assert_close(model.log_marginal(x), torch.logsumexp(joint, -1))
    torch.testing.assert_close(model.posterior(x).probs.sum(-1), torch.ones(16))
    # importance sampling with a discrete proposal, weights per data point
    result = log_likelihood(model, guide, x, num_particles=3000, chunk_size=1000, batch_size=8)
    err = (result.log_likelihood - model.log_marginal(x).detach()).abs()
    assert (err < 5 * result.stderr + 1e-3).all()


def test_mixture_estimators_baseline_and_enumeration(gmm):
    """Baseline < no baseline in variance; enumeration is exact (zero variance) and agrees with
    the score-function mean."""
    model, guide, x = gmm
    params = list(guide.parameters())
    results = compare_estimators(
        {
            "score function": (TraceGraph_ELBO(), guide),
            "score function + baseline": (TraceGraph_ELBO(),
                                          score_function(guide, baseline=BASELINE)),
            "enumerated": (TraceEnum_ELBO(max_plate_nesting=1), config_enumerate(guide)),
        },
        model, (x,), params=params, num_samples=40,
    )
    var = [r["total_variance"] for r in results.values()]
    assert var[2] < 1e-8 * var[0] and var[1] < var[0], markdown_table(results)
    enum = sample_gradients(TraceEnum_ELBO(max_plate_nesting=1), model, config_enumerate(guide),
                            (x,), params=params, num_samples=2)[0]
    sf = sample_gradients(TraceGraph_ELBO(), model, guide, (x,), params=params, num_samples=100)
    assert ((sf.mean(0) - enum).abs() < 5 * (sf.var(0) / 100).sqrt() + 1e-5).all()


def test_mixture_trains_with_tracegraph_baseline(gmm):
    model, guide, _ = gmm
    x = GaussianMixture(input_dim=2, num_components=3, init_scale=4.0, seed=7)(batch_size=32)
    x = x.detach()  # data from another mixture, so there is something to learn
    elbo = TraceGraph_ELBO()
    guide_sf = score_function(guide, baseline=BASELINE)
    params = list(model.parameters()) + list(guide.parameters())
    optim = torch.optim.Adam(params, lr=0.05)
    exact_before = model.log_marginal(x).sum().item()
    for _ in range(40):
        optim.zero_grad()
        elbo._loss_and_surrogate_loss(model, guide_sf, (x,), {})[1].backward()
        optim.step()
    assert model.log_marginal(x).sum().item() > exact_before + 10
