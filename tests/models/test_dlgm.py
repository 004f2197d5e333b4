"""DLGM: with one layer it is the VAE; its declared sites are its traced sites; with two layers it
trains on digits."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.diagonal_normal import DiagonalNormalGuide
from zoo.data import load
from zoo.evaluation import heldout_elbo
from zoo.infer.importance import log_likelihood
from zoo.models.dlgm import DLGM
from zoo.models.vae import VAE
from zoo.registry import get_guide
from zoo.train import fit


def _batch(n=12, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.3), generator=g)


def _elbo(model, guide, x, seed=3):
    pyro.set_rng_seed(seed)
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    return elbo.loss(model, guide, x)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_one_layer_dlgm_is_the_vae(likelihood):
    pyro.set_rng_seed(0)
    vae = VAE(input_dim=16, latent_dim=5, hidden_dims=(11, 9), likelihood=likelihood)
    vae_guide = DiagonalNormalGuide(vae, hidden_dims=(13,))
    dlgm = DLGM(input_dim=16, latent_dims=(5,), hidden_dims=(11, 9), likelihood=likelihood)
    dlgm_guide = DiagonalNormalGuide(dlgm, hidden_dims=(13,))
    # The VAE's weights load as they are: DLGM(L=1) has exactly the VAE's parameters.
    dlgm.load_state_dict(vae.state_dict())
    dlgm_guide.load_state_dict(
        {k.replace("heads.z.", "heads.z_1."): v for k, v in vae_guide.state_dict().items()}
    )
    x = _batch() if likelihood == "bernoulli" else torch.randn(12, 16)
    expected = _elbo(vae, vae_guide, x)
    assert _elbo(dlgm, dlgm_guide, x) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    # the comparison can fail: another decoder weight changes the ELBO
    with torch.no_grad():
        dlgm.decoder[0].weight.add_(0.5)
    assert abs(_elbo(dlgm, dlgm_guide, x) - expected) > 1e-3


@pytest.mark.parametrize("latent_dims", [(4,), (6, 3), (7, 5, 2)])
@pytest.mark.parametrize("noise", ["diagonal", "full"])
def test_latent_sites_match_the_trace(seed, latent_dims, noise):
    model = DLGM(input_dim=16, latent_dims=latent_dims, hidden_dims=(8,), transition_dims=(6,),
                 noise=noise)
    trace = poutine.trace(model).get_trace(_batch())
    traced = [
        (name, tuple(site["fn"].event_shape))
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name != "data"
    ]
    declared = [(s.name, s.event_shape) for s in model.latent_sites()]
    assert traced == declared
    assert [name for name, _ in traced] == [f"z_{l}" for l in range(len(latent_dims), 0, -1)]
    for s in model.latent_sites():
        assert trace.nodes[s.name]["fn"].batch_shape == (12,)
        assert trace.nodes[s.name]["value"].shape == (12, *s.event_shape)
    guide_trace = poutine.trace(get_guide("low_rank_normal", model)).get_trace(_batch())
    assert [n for n in guide_trace.stochastic_nodes if n != "data"] == [n for n, _ in traced]


def test_layers_are_gaussian_around_the_transition(seed):
    model = DLGM(input_dim=16, latent_dims=(6, 3), noise="full")
    with torch.no_grad():
        model.noise[0].off_diag.normal_()
    z_2 = torch.randn(4, 3)
    layer = model.layer_dist(1, z_2)
    g = model.noise[0].scale_tril()
    assert torch.equal(torch.triu(g, diagonal=1), torch.zeros(6, 6))
    torch.testing.assert_close(layer.covariance_matrix, (g @ g.T).expand(4, 6, 6))
    torch.testing.assert_close(layer.mean, model.transitions[0](z_2))
    # Diagonal noise starts at G = I: h_1 = T_1(h_2) + xi_1.
    diag = DLGM(input_dim=16, latent_dims=(6, 3)).noise[0].diag()
    torch.testing.assert_close(diag, torch.ones(6), atol=1e-4, rtol=0)


def test_prior_samples_and_gradients_reach_every_layer(seed):
    model = DLGM(input_dim=16, latent_dims=(6, 4, 3), noise="full")
    images_ = model(batch_size=7)
    assert images_.shape == (7, 16) and set(images_.unique().tolist()) <= {0.0, 1.0}
    guide = get_guide("diagonal_normal", model, hidden_dims=(10,))
    loss = Trace_ELBO()(model, guide)(_batch(), num_data=12)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_configuration_says_the_fix():
    with pytest.raises(ValueError, match="latent_dims must list"):
        DLGM(latent_dims=())
    with pytest.raises(ValueError, match="noise must be one of"):
        DLGM(noise="scalar")
    with pytest.raises(ValueError, match="likelihood must be"):
        DLGM(likelihood="poisson")


@pytest.mark.parametrize("guide_name", ["diagonal_normal", "householder", "low_rank_normal"])
def test_two_layer_dlgm_learns_digits(guide_name):
    data = load("digits")
    pyro.set_rng_seed(0)
    model = DLGM(input_dim=64, latent_dims=(16, 8), hidden_dims=(128,), transition_dims=(64,))
    guide = get_guide(guide_name, model, hidden_dims=(128,))
    before = heldout_elbo(model, guide, data.test)
    history = fit(model, guide, data, epochs=4, batch_size=64, lr=3e-3, seed=0, progress=False)
    elbos = [h["heldout_elbo"] for h in history]
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in history)
    assert elbos[-1] > elbos[0] > before
    assert elbos[-1] > -40.0  # nats per 8x8 image; the untrained model scores about -45
    # the importance-sampled log-likelihood (K = 100) sits above the ELBO
    pyro.set_rng_seed(1)
    result = log_likelihood(model, guide, data.test, num_particles=100, chunk_size=100)
    assert torch.isfinite(result.log_likelihood).all()
    assert result.log_likelihood.mean().item() > elbos[-1]


@pytest.mark.parametrize("noise", ["diagonal", "full"])
def test_noise_init_sets_the_starting_noise_factor(noise):
    model = DLGM(input_dim=16, latent_dims=(6, 3), noise=noise, noise_init=0.25)
    torch.testing.assert_close(model.noise[0].diag(), torch.full((6,), 0.25), atol=1e-5, rtol=0)
    z_2 = torch.randn(4, 3)
    assert model.layer_dist(1, z_2).variance.allclose(torch.full((4, 6), 0.0625), atol=1e-5)
    assert model.config["noise_init"] == 0.25
    with pytest.raises(ValueError, match="noise_init must be above"):
        DLGM(noise_init=0.0)
