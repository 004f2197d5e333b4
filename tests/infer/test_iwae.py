"""Tests of the IWAE objective and its DReG gradient (zoo/infer/iwae.py), on exact PPCA."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO
from pyro.nn import PyroModule
from torch import nn

from zoo.infer import get_objective, list_objectives
from zoo.infer.iwae import IWAE
from zoo.models.ppca import PPCA, ExactPosteriorGuide
from zoo.poutine import score_function
from zoo.registry import get_guide, get_model, list_models


class MeanFieldGuide(PyroModule):
    """Free loc and log-scale per data point (a fixed batch), for gradient checks."""

    def __init__(self, loc, scale):
        super().__init__()
        self.loc = nn.Parameter(loc.clone())
        self.log_scale = nn.Parameter(scale.log().clone())

    def forward(self, x, num_data=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(self.loc, self.log_scale.exp()).to_event(1))


@pytest.fixture
def ppca(make_ppca):
    return make_ppca()


def _mean_bound(objective, model, guide, x, reps):
    values = torch.stack([-objective.differentiable_loss(model, guide, x).detach()
                          for _ in range(reps)])
    return values.mean().item(), values.std().item() / reps**0.5


def test_registered_by_name():
    assert {"iwae", "iwae-dreg"} <= set(list_objectives())
    assert isinstance(get_objective("iwae", num_particles=5), IWAE)
    assert get_objective("iwae-dreg", num_particles=3).dreg


def test_bounds_are_ordered_and_rise_with_k(ppca):
    """ELBO <= IWAE_5 <= IWAE_50 <= log p(x), each within 4 Monte Carlo standard errors."""
    model, x = ppca
    guide = ExactPosteriorGuide(model, inflate=1.8, shift=0.5)
    exact = model.log_marginal(x).sum().item()
    elbo, elbo_se = _mean_bound(Trace_ELBO(), model, guide, x, 150)
    bounds = [_mean_bound(IWAE(num_particles=k), model, guide, x, 150) for k in (1, 5, 50)]
    assert abs(bounds[0][0] - elbo) < 4 * (bounds[0][1] ** 2 + elbo_se**2) ** 0.5  # K=1 is ELBO
    values = [elbo] + [b[0] for b in bounds[1:]] + [exact]
    ses = [elbo_se] + [b[1] for b in bounds[1:]] + [0.0]
    for (lo, se_lo), (hi, se_hi) in zip(zip(values, ses), zip(values[1:], ses[1:])):
        assert lo < hi + 4 * (se_lo**2 + se_hi**2) ** 0.5
    assert values[2] - values[1] > 4 * (ses[1] ** 2 + ses[2] ** 2) ** 0.5  # strictly rises


def test_agrees_with_pyro_renyi_elbo_on_a_local_model(ppca):
    """Where every site sits in the data plate, Pyro's RenyiELBO(alpha=0) is per data point
    too: the two estimates of IWAE_20 agree within Monte Carlo error."""
    model, x = ppca
    guide = ExactPosteriorGuide(model, inflate=1.8, shift=0.5)
    ours, se = _mean_bound(IWAE(num_particles=20), model, guide, x, 100)
    renyi = RenyiELBO(alpha=0.0, num_particles=20, vectorize_particles=True, max_plate_nesting=1)
    theirs = torch.tensor([-renyi.loss(model, guide, x) for _ in range(100)])
    assert abs(ours - theirs.mean().item()) < 4 * (se**2 + theirs.var().item() / 100) ** 0.5
    assert ours < model.log_marginal(x).sum().item()


def test_exact_guide_bound_equals_evidence_and_minibatch_scale(ppca):
    model, x = ppca
    guide = ExactPosteriorGuide(model)
    exact = model.log_marginal(x).sum()
    iwae = IWAE(num_particles=4)
    torch.testing.assert_close(-iwae.differentiable_loss(model, guide, x), exact, atol=2e-3,
                               rtol=0)
    scaled = -iwae.differentiable_loss(model, guide, x, 80)  # num_data = 80, batch of 8
    torch.testing.assert_close(scaled, 10 * exact, atol=2e-2, rtol=0)


def test_dreg_guide_gradient_vanishes_at_the_exact_posterior():
    """At q = p(z|x), log w is constant in z: DReG's guide gradient is exactly 0 for every
    draw, while plain IWAE's has a nonzero score term."""
    pyro.set_rng_seed(1)
    model = PPCA(input_dim=4, latent_dim=2, noise_scale=0.5, seed=0)
    with torch.no_grad():  # orthogonal columns make the posterior covariance diagonal
        model.weight.copy_(torch.linalg.qr(model.weight).Q * torch.tensor([2.0, 1.0]))
    x = model(batch_size=5).detach()
    post = model.posterior(x)
    std = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt().detach()
    guide = MeanFieldGuide(post.loc.detach(), std)
    for dreg, small in ((True, True), (False, False)):
        loss = IWAE(num_particles=6, dreg=dreg).differentiable_loss(model, guide, x)
        grads = torch.autograd.grad(loss, list(guide.parameters()))
        norm = torch.cat([g.reshape(-1) for g in grads]).norm().item()
        assert (norm < 1e-3) == small, (dreg, norm)


def test_dreg_model_gradient_equals_iwae(ppca):
    model, x = ppca
    guide = get_guide("diagonal_normal", model, hidden_dims=(8,))
    grads = []
    for dreg in (False, True):
        pyro.set_rng_seed(5)
        loss = IWAE(num_particles=7, dreg=dreg).differentiable_loss(model, guide, x)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
        if dreg:
            pyro.set_rng_seed(5)
            plain = IWAE(num_particles=7).differentiable_loss(model, guide, x)
            torch.testing.assert_close(loss, plain)  # the reported value is the bound
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_training_step_and_non_reparameterized_error(ppca):
    model, x = ppca
    guide = get_guide("diagonal_normal", model, hidden_dims=(8,))
    loss_fn = get_objective("iwae-dreg", num_particles=5)(model, guide)
    optim = torch.optim.Adam(loss_fn.parameters(), lr=0.01)
    start = loss_fn(x).item()
    for _ in range(30):
        optim.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        optim.step()
    assert loss_fn(x).item() < start
    with pytest.raises(ValueError, match="tracegraph"):
        IWAE(num_particles=2).differentiable_loss(model, score_function(guide), x)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_trains_with_iwae(name):
    """Anything registered either takes a finite IWAE/DReG step with its default guide, or (a
    discrete guide) is refused with a message naming the alternative."""
    pyro.set_rng_seed(0)
    model = get_model(name)
    guide = get_guide(model.default_guide, model, **model.default_guide_options)
    x = model.example_batch(4)
    for dreg in (False, True):
        objective = IWAE(num_particles=3, dreg=dreg)
        try:
            loss = objective.differentiable_loss(model, guide, x, 50)
        except ValueError as error:
            assert "tracegraph" in str(error)
            assert any(s.support == "categorical" for s in model.latent_sites())
            return
        loss.backward()
        assert torch.isfinite(loss)
        grads = [p.grad for p in guide.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
