"""The diagonal-plus-low-rank guide: its density is the full-covariance Gaussian's, both the
covariance and the paper's precision form, on every layer of a DLGM."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.low_rank_normal import (
    LowRankNormalGuide,
    low_rank_normal,
    precision_to_covariance_factor,
)
from zoo.registry import get_guide, get_model, list_guides


def _model(latent_dims=(6, 3)):
    return get_model("dlgm", input_dim=16, latent_dims=latent_dims, hidden_dims=(12,),
                     transition_dims=(8,))


def _batch(n=5, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.4), generator=g)


@pytest.mark.parametrize("rank", [1, 3])
def test_log_density_equals_full_covariance_normal(seed, rank):
    model = _model()
    guide = get_guide("low_rank_normal", model, rank=rank, hidden_dims=(10,))
    # A factor far from its near-zero start, so the low-rank part matters.
    for head in guide.factor_heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    x = _batch()
    trace = poutine.trace(guide).get_trace(x)
    h = guide.hidden(x)
    for name in ("z_1", "z_2"):
        site = trace.nodes[name]
        loc, scale = guide.heads[name](h)
        factor = guide.factor(name, h)  # [batch, d, rank]
        assert factor.shape == (5, loc.shape[-1], rank)
        cov = torch.diag_embed(scale**2) + factor @ factor.transpose(-1, -2)
        expected = dist.MultivariateNormal(loc, covariance_matrix=cov).log_prob(site["value"])
        torch.testing.assert_close(site["fn"].log_prob(site["value"]), expected)
        # and the low-rank part is not negligible: a diagonal Gaussian scores differently
        diagonal = dist.Normal(loc, scale).to_event(1).log_prob(site["value"])
        assert (diagonal - expected).abs().max() > 1e-2


def test_precision_form_is_the_papers_recognition_model(seed):
    model = _model()
    guide = get_guide("low_rank_normal", model, form="precision", hidden_dims=(10,))
    for head in guide.factor_heads.values():
        torch.nn.init.normal_(head.weight, std=0.5)
    x = _batch()
    trace = poutine.trace(guide).get_trace(x)
    h = guide.hidden(x)
    loc, scale = guide.heads["z_1"](h)
    u = guide.factor("z_1", h)[..., 0]  # [batch, d]
    precision = torch.diag_embed(scale**-2) + u.unsqueeze(-1) * u.unsqueeze(-2)
    # Woodbury: the covariance is diag(scale^2) - v v^T
    d_inv, v = precision_to_covariance_factor(scale**-2, u)
    cov = torch.diag_embed(d_inv) - v.unsqueeze(-1) * v.unsqueeze(-2)
    torch.testing.assert_close(cov @ precision, torch.eye(6).expand(5, 6, 6), atol=1e-4, rtol=0)
    value = trace.nodes["z_1"]["value"]
    expected = dist.MultivariateNormal(loc, covariance_matrix=cov).log_prob(value)
    torch.testing.assert_close(trace.nodes["z_1"]["fn"].log_prob(value), expected, atol=1e-4,
                               rtol=1e-5)


def test_the_two_forms_are_mirror_images_in_three_dimensions():
    # Off-diagonals of D + u u^T are u_i u_j: around a triangle their product is positive;
    # those of D^{-1} - v v^T (the paper's form) have a negative product.
    g = torch.Generator().manual_seed(1)
    u = torch.randn(100, 3, generator=g)
    diag = torch.rand(100, 3, generator=g) + 0.1
    cov_form = low_rank_normal(torch.zeros(100, 3), diag.sqrt(), u.unsqueeze(-1))
    prec_form = low_rank_normal(torch.zeros(100, 3), diag.rsqrt(), u.unsqueeze(-1), "precision")
    for d, sign in ((cov_form, 1.0), (prec_form, -1.0)):
        c = d.covariance_matrix
        triangle = c[:, 0, 1] * c[:, 1, 2] * c[:, 0, 2]
        assert (sign * triangle > 0).all()


def test_fits_every_model_with_local_real_vectors():
    assert "low_rank_normal" in list_guides(get_model("vae", input_dim=16))
    assert "low_rank_normal" in list_guides(_model())


def test_bad_options_say_the_fix():
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        LowRankNormalGuide(_model(), rank=0)
    with pytest.raises(ValueError, match="form must be one of"):
        LowRankNormalGuide(_model(), form="cholesky")


@pytest.mark.parametrize("form", ["covariance", "precision"])
def test_vectorized_particles_and_a_training_step(seed, form):
    model = _model()
    guide = get_guide("low_rank_normal", model, rank=2, form=form, hidden_dims=(10,))
    x = _batch(8)
    elbo = Trace_ELBO(num_particles=7, vectorize_particles=True, max_plate_nesting=1)
    loss_fn = elbo(model, guide)
    params = list(loss_fn.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    with pyro.plate("particles", 7, dim=-2):  # the guide's distributions expand under plates
        trace = poutine.trace(guide).get_trace(x, num_data=8)
    assert trace.nodes["z_1"]["value"].shape == (7, 8, 6)
    assert trace.nodes["z_1"]["fn"].batch_shape == (7, 8)
    loss = loss_fn(x, num_data=8)
    assert torch.isfinite(loss)
    optimizer.zero_grad()
    loss.backward()
    factor_grad = guide.factor_heads["z_1"].weight.grad
    assert factor_grad is not None and factor_grad.abs().sum() > 0
    optimizer.step()
    pyro.set_rng_seed(0)
    assert torch.isfinite(loss_fn(x, num_data=8))
