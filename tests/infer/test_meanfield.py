"""``meanfield`` (``zoo.infer.meanfield.MeanFieldELBO``) is Pyro's ``TraceMeanField_ELBO``
computing fewer terms: on every registered (model, guide) pair it must give the same loss and
the same gradients from the same random draws."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from zoo.infer.meanfield import MeanFieldELBO
from zoo.registry import get_guide, get_model, list_guides, list_models

PAIRS = [(m, g) for m in list_models() for g in list_guides(m)]


def loss_and_grads(elbo, model, guide, x, seed):
    pyro.set_rng_seed(seed)
    module = elbo(model, guide)
    module.zero_grad(set_to_none=True)
    loss = module(x, num_data=100)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


def assert_same_as_pyro(model, guide, x, num_particles=1):
    options = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                   max_plate_nesting=model.max_plate_nesting)
    ours, our_grads = loss_and_grads(MeanFieldElboOff(**options), model, guide, x, seed=1)
    pyros, pyro_grads = loss_and_grads(TraceMeanField_ELBO(**options), model, guide, x, seed=1)
    torch.testing.assert_close(ours, pyros)
    assert len(our_grads) == len(pyro_grads) > 0
    for ours_g, pyro_g in zip(our_grads, pyro_grads):
        torch.testing.assert_close(ours_g, pyro_g)


class MeanFieldElboOff(MeanFieldELBO):
    """The lean path runs only with validation off (with it on, the class is Pyro's code)."""

    def differentiable_loss(self, *args, **kwargs):
        with pyro.validation_enabled(False):
            return super().differentiable_loss(*args, **kwargs)


@pytest.mark.parametrize("model_name,guide_name", PAIRS)
def test_same_loss_and_gradients_as_pyro_on_every_pair(model_name, guide_name):
    pyro.set_rng_seed(0)
    model = get_model(model_name)
    guide = get_guide(guide_name, model, **model.default_guide_options)
    model.eval(), guide.eval()  # dropout and batch statistics would differ between the runs
    x = model.example_batch(8)
    with pyro.validation_enabled(False):  # Pyro's TraceMeanField too: the same draws
        assert_same_as_pyro(model, guide, x)


def test_same_as_pyro_with_vectorized_particles():
    pyro.set_rng_seed(0)
    model = get_model("vae")
    guide = get_guide("householder", model)
    with pyro.validation_enabled(False):
        assert_same_as_pyro(model, guide, model.example_batch(8), num_particles=5)


def test_kl_falls_back_to_monte_carlo_and_counts_auxiliary_guide_sites():
    # No closed-form KL(Gamma || LogNormal): the term is log p(z) - log q(z); the guide's
    # auxiliary site (not in the model) adds its entropy, as in Pyro.
    loc = torch.tensor(0.3, requires_grad=True)

    def model(x, num_data=None):
        z = pyro.sample("z", dist.LogNormal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(z.log(), 1.0), obs=x)

    def guide(x, num_data=None):
        u = pyro.sample("u", dist.Normal(loc, 1.0), infer={"is_auxiliary": True})
        pyro.sample("z", dist.Gamma(u.exp(), 2.0))

    x = torch.tensor([0.1, -0.4, 0.9])
    losses, grads = [], []
    for elbo in (MeanFieldElboOff(max_plate_nesting=1), TraceMeanField_ELBO(max_plate_nesting=1)):
        pyro.set_rng_seed(3)
        with pyro.validation_enabled(False):
            loss = elbo.differentiable_loss(model, guide, x)
        losses.append(loss.detach())
        grads.append(torch.autograd.grad(loss, loc)[0])
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(grads[0], grads[1])


def test_with_validation_on_it_is_pyros_path_with_its_checks():
    # A plate deeper than the max_plate_nesting given: Pyro's site-shape check refuses it; the
    # lean path, which skips Pyro's checks, would not.
    def model(x, num_data=None):
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def guide(x, num_data=None):
        with pyro.plate("data", 3):
            pyro.sample("z", dist.Normal(0.0, 2.0))

    elbo = MeanFieldELBO(max_plate_nesting=0)
    with pytest.raises(ValueError, match='at site "z", plate stack overflow'):
        elbo.differentiable_loss(model, guide, torch.zeros(1))
    with pyro.validation_enabled(False):
        assert torch.isfinite(elbo.differentiable_loss(model, guide, torch.zeros(1)))


def test_loss_and_svi_step_match_pyro():
    # loss() and loss_and_grads() (what pyro.infer.SVI calls) too, with the global param store.
    def model(x, num_data=None):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    def guide(x, num_data=None):
        loc = pyro.param("loc", torch.zeros(len(x)))
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(loc, 0.3))

    x = torch.tensor([0.5, -1.0, 2.0])
    results = []
    for elbo in (MeanFieldELBO(max_plate_nesting=1), TraceMeanField_ELBO(max_plate_nesting=1)):
        pyro.clear_param_store()
        with pyro.settings.context(module_local_params=False), pyro.validation_enabled(False):
            pyro.set_rng_seed(2)
            loss = elbo.loss(model, guide, x)
            svi = pyro.infer.SVI(model, guide, pyro.optim.SGD({"lr": 0.1}), elbo)
            step_loss = svi.step(x)
            results.append((loss, step_loss, pyro.param("loc").detach().clone()))
    for ours, pyros in zip(*results):
        torch.testing.assert_close(ours, pyros)
