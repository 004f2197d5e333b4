"""Tests of the amortization gap (zoo/infer/amortization.py), checked on PPCA with orthogonal
weights, whose exact posterior is a diagonal Gaussian: refined to convergence, the diagonal
guide's ELBO is the exact evidence, so the refined ELBO and the whole gap are known."""

import pyro
import pytest
import torch

from zoo.infer.amortization import amortization_gap, point_elbos
from zoo.registry import get_guide, get_model


@pytest.fixture
def diagonal_ppca(make_ppca):
    """PPCA whose weight columns are orthogonal (so p(z | x) has a diagonal covariance), an
    untrained diagonal-normal guide, and data drawn from the model."""
    model, _ = make_ppca(input_dim=6, latent_dim=2, noise_scale=0.8)
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(6, 2, generator=torch.Generator().manual_seed(1)))
        model.weight.copy_(q * torch.tensor([2.0, 1.0]))  # columns orthogonal, lengths 2 and 1
        x = model(batch_size=12).detach()
    model.requires_grad_(True)
    guide = get_guide("diagonal_normal", model, hidden_dims=(32,))
    return model, guide, x


def test_the_exact_posterior_is_diagonal_so_the_refined_elbo_is_the_evidence(diagonal_ppca):
    model, _, x = diagonal_ppca
    cov = model.posterior(x).covariance_matrix[0].detach()
    assert torch.allclose(cov, torch.diag(torch.diagonal(cov)), atol=1e-6)


def test_refinement_closes_the_whole_gap_when_the_family_holds_the_posterior(diagonal_ppca):
    """An untrained encoder is far from p(z | x); refined per point it reaches the exact
    posterior, so the refined ELBO equals log p(x) (the approximation gap is 0) and the
    amortization gap is log p(x) - ELBO(q_phi), point by point."""
    model, guide, x = diagonal_ppca
    pyro.set_rng_seed(0)
    result = amortization_gap(model, guide, x, steps=400, lr=0.05, num_particles=256,
                              eval_particles=2000, batch_size=6)
    exact = model.log_marginal(x).detach().double()
    assert result["refined_elbo"] == pytest.approx(exact.mean().item(), abs=0.02)
    assert result["amortization_gap"] > 1.0  # the random encoder leaves nats on the table
    assert result["amortization_gap"] == pytest.approx(
        exact.mean().item() - result["amortized_elbo"], abs=0.02)
    assert len(result["pointwise_amortization_gap"]) == len(x)
    assert min(result["pointwise_amortization_gap"]) > 0


def test_refinement_moves_nothing_but_the_copies_of_the_local_parameters(diagonal_ppca):
    model, guide, x = diagonal_ppca
    before = [p.detach().clone() for p in [*model.parameters(), *guide.parameters()]]
    model.train()
    guide.train()
    amortization_gap(model, guide, x, steps=5, eval_particles=10)
    after = [*model.parameters(), *guide.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert all(p.grad is None for p in after)
    assert model.training and guide.training  # modes restored


def test_the_override_reaches_every_member_of_the_gaussian_family(make_ppca):
    """Each guide built on the diagonal one computes every per-point quantity from the local
    parameters that refinement moves: at the encoder's values they give the encoder's ELBO, and
    moving any one of them changes it."""
    model, x = make_ppca()
    for name in ("diagonal_normal", "householder", "low_rank_normal"):
        guide = get_guide(name, model).eval()
        assert guide.refinable
        start = guide.local_parameters(x)
        pyro.set_rng_seed(0)
        encoder = point_elbos(model, guide, x, 4)
        pyro.set_rng_seed(0)
        same = point_elbos(model, guide, x, 4, start)
        assert torch.equal(encoder, same), name
        for key in start:
            pyro.set_rng_seed(0)
            moved = point_elbos(model, guide, x, 4, {**start, key: start[key] + 1.0})
            assert not torch.allclose(encoder, moved), (name, key)


def test_chain_guides_are_refined_at_their_bottom_layer():
    model = get_model("dlgm", input_dim=64, latent_dims=(4, 2))
    guide = get_guide("chain_normal", model).eval()
    x = torch.bernoulli(torch.full((5, 64), 0.3))
    pyro.set_rng_seed(0)
    result = amortization_gap(model, guide, x, steps=20, eval_particles=50)
    assert result["refined_elbo"] > result["amortized_elbo"]


def test_a_guide_without_local_parameters_is_refused_by_name():
    model = get_model("gmm", input_dim=2, num_components=3)
    guide = get_guide("categorical", model)
    with pytest.raises(ValueError, match="guide 'categorical' does not expose its local"):
        amortization_gap(model, guide, torch.randn(4, 2))


def test_a_model_with_a_global_latent_is_refused_with_the_reason():
    model = get_model("lda", input_dim=30, num_topics=3)
    guide = get_guide("dirichlet", model)
    x = torch.poisson(torch.full((4, 30), 2.0))
    with pytest.raises(ValueError, match="'lda' has a global latent"):
        amortization_gap(model, guide, x, steps=1)
