"""KL warm-up: the annealed objective is the ELBO at weight 1, the reconstruction term alone at
weight 0, linear in the weight between, and trains through the engine."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from zoo.infer.annealing import AnnealedELBO, scale_latents
from zoo.infer.objectives import get_objective
from zoo.registry import get_guide, get_model


def _pair(guide_name="diagonal_normal"):
    pyro.set_rng_seed(0)
    model = get_model("dlgm", input_dim=16, latent_dims=(6, 3), hidden_dims=(12,),
                      transition_dims=(8,))
    return model, get_guide(guide_name, model, hidden_dims=(10,))


def _batch(n=7, d=16):
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, d), 0.4), generator=g)


def _loss(elbo, model, guide, x, seed=5, **kwargs):
    pyro.set_rng_seed(seed)
    return elbo.loss(model, guide, x, **kwargs)


def _reconstruction_loss(model, guide, x, seed=5, **kwargs):
    """-log p(x | z) at the z the guide draws under ``seed`` (the same draw as ``_loss``)."""
    pyro.set_rng_seed(seed)
    guide_trace = poutine.trace(guide).get_trace(x, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x, **kwargs)
    model_trace.compute_log_prob()
    return -model_trace.nodes["x"]["log_prob_sum"].item()


@pytest.mark.parametrize("num_particles", [1, 3])
def test_weight_one_is_the_elbo(num_particles):
    model, guide = _pair()
    x = _batch()
    options = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                   max_plate_nesting=1)
    expected = _loss(Trace_ELBO(**options), model, guide, x)
    assert _loss(AnnealedELBO(kl_weight=1.0, **options), model, guide, x) == pytest.approx(
        expected, rel=1e-6)


@pytest.mark.parametrize("num_data", [None, 70])
def test_weight_zero_is_the_reconstruction_term(num_data):
    model, guide = _pair("low_rank_normal")
    x = _batch()
    kwargs = {} if num_data is None else {"num_data": num_data}
    loss = _loss(AnnealedELBO(kl_weight=0.0, max_plate_nesting=1), model, guide, x, **kwargs)
    scale = 1.0 if num_data is None else num_data / len(x)
    expected = scale * _reconstruction_loss(model, guide, x)
    assert loss == pytest.approx(expected, rel=1e-5)
    # and the KL part is not zero, so weight 0 really drops something
    assert abs(_loss(Trace_ELBO(max_plate_nesting=1), model, guide, x, **kwargs) - loss) > 1.0


def test_loss_is_linear_in_the_weight():
    model, guide = _pair()
    x = _batch()
    at = {b: _loss(AnnealedELBO(kl_weight=b, max_plate_nesting=1), model, guide, x)
          for b in (0.0, 0.3, 1.0)}
    assert at[0.3] == pytest.approx(0.7 * at[0.0] + 0.3 * at[1.0], rel=1e-5)


def test_gradients_flow_through_the_module_form():
    model, guide = _pair()
    loss = get_objective("annealed", kl_weight=0.5, max_plate_nesting=1)(model, guide)(
        _batch(), num_data=70)
    loss.backward()
    assert all(p.grad is not None for p in guide.parameters())
    # every model parameter but the top layer's (p(z_2) has none) gets a gradient
    assert model.transitions[0][0].weight.grad.abs().sum() > 0


def test_handler_scales_latent_sites_only():
    model, _ = _pair()
    trace = poutine.trace(scale_latents(model, 0.25)).get_trace(_batch())
    assert trace.nodes["z_1"]["scale"] == 0.25 and trace.nodes["z_2"]["scale"] == 0.25
    assert trace.nodes["x"]["scale"] == 1.0


@pytest.mark.parametrize("weight", [-0.1, float("nan")])
def test_bad_weight_says_what_is_allowed(weight):
    with pytest.raises(ValueError, match="must be >= 0"):
        AnnealedELBO(kl_weight=weight)
