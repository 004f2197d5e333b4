"""Centralized transformation flow guide: orthogonality, the analytic KL, the KL invariance
under an isotropic prior (and its failure under a full covariance), and the registered KLs."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from guides.ctf import CentralizedFlowGuide, householder_product, rotated_normal
from guides.householder import HouseholderNormal
from zoo.registry import get_guide, get_model
from zoo.schedules import Progress

K = 6


def _perturbed_guide(num_flows=4):
    torch.manual_seed(0)
    # prior learned from the first step: the guide rotates (it waits out a warm-up otherwise)
    model = get_model("ctm", input_dim=20, num_topics=K, prior_warmup=0)
    guide = get_guide("ctf", model, num_flows=num_flows)
    with torch.no_grad():  # move W_t away from the identity so U is a generic rotation
        for layer in guide.mixers["doc_logits"]:
            layer.weight.add_(0.5 * torch.randn_like(layer.weight))
            layer.bias.add_(0.3 * torch.randn_like(layer.bias))
    return model, guide


def _full_covariance_prior():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(K, K, generator=g)
    cov = a @ a.T / K + 0.3 * torch.eye(K)
    return dist.MultivariateNormal(0.5 * torch.randn(K, generator=g), covariance_matrix=cov)


def test_rotation_is_orthogonal():
    _, guide = _perturbed_guide()
    loc = torch.randn(16, K)
    u = guide.rotation("doc_logits", loc)  # [16, K, K]
    eye = torch.eye(K).expand(16, K, K)
    assert torch.allclose(u.transpose(-1, -2) @ u, eye, atol=1e-5)
    assert torch.allclose(u @ u.transpose(-1, -2), eye, atol=1e-5)
    assert (u - eye).abs().max() > 0.1  # and not the identity


def test_literal_nvctm_rule_is_degenerate():
    # v_{t+1} = H(v_t) v_t = -v_t: every reflection is H(mu), so U is I or H(mu).
    mu = torch.randn(3, K)
    v = torch.stack([mu, -mu, mu, -mu], dim=-2)
    assert torch.allclose(householder_product(v), torch.eye(K).expand(3, K, K), atol=1e-5)
    # CTF at initialization (W_t = I) is exactly that rule.
    model = get_model("ctm", input_dim=20, num_topics=K)
    guide = CentralizedFlowGuide(model, num_flows=4)
    u = guide.rotation("doc_logits", mu)
    assert torch.allclose(u, torch.eye(K).expand(3, K, K), atol=1e-5)


def test_rotated_normal_has_the_stated_covariance():
    _, guide = _perturbed_guide()
    loc, scale = torch.randn(4, K), torch.rand(4, K) + 0.1
    u = guide.rotation("doc_logits", loc)
    q = rotated_normal(loc, scale, u)
    expected = u @ torch.diag_embed(scale**2) @ u.transpose(-1, -2)
    assert torch.allclose(q.covariance_matrix, expected, atol=1e-5)
    assert torch.allclose(q.loc, (u @ loc.unsqueeze(-1)).squeeze(-1), atol=1e-6)


def test_analytic_kl_matches_monte_carlo():
    pyro.set_rng_seed(0)
    _, guide = _perturbed_guide()
    loc, scale = torch.randn(1, K), torch.rand(1, K) + 0.2
    q = guide.site_dist("doc_logits", loc, scale, None)
    p = _full_covariance_prior()
    analytic = kl_divergence(q, p)
    z = q.sample((200_000,))  # [S, 1, K]
    log_ratio = q.log_prob(z) - p.log_prob(z)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / 200_000**0.5
    assert (analytic - mc).abs().item() < 4 * se.item() + 1e-4


@pytest.mark.parametrize("s", [1.0, (1 - 1 / K) ** 0.5])
def test_kl_is_invariant_under_an_isotropic_prior(s):
    _, guide = _perturbed_guide()
    loc, scale = 2 * torch.randn(5, K), torch.rand(5, K) + 0.1
    q_flow = guide.site_dist("doc_logits", loc, scale, None)
    q_diag = dist.Normal(loc, scale).to_event(1)
    for p in (dist.Normal(torch.zeros(K), s).to_event(1),
              dist.MultivariateNormal(torch.zeros(K), s**2 * torch.eye(K))):
        assert torch.allclose(kl_divergence(q_flow, p), kl_divergence(q_diag, p), rtol=1e-4)


def test_kl_differs_under_a_full_covariance_prior():
    _, guide = _perturbed_guide()
    loc, scale = 2 * torch.randn(5, K), torch.rand(5, K) + 0.1
    q_flow = guide.site_dist("doc_logits", loc, scale, None)
    q_diag = dist.Normal(loc, scale).to_event(1)
    p = _full_covariance_prior()
    gap = (kl_divergence(q_flow, p) - kl_divergence(q_diag, p)).abs()
    assert (gap > 0.1).all()


def test_householder_kl_against_mvn_is_registered_and_right():
    pyro.set_rng_seed(0)
    loc, scale, vectors = torch.randn(K), torch.rand(K) + 0.2, torch.randn(3, K)
    q = HouseholderNormal(loc, scale, vectors)
    p = _full_covariance_prior()
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    se = log_ratio.std() / 200_000**0.5
    assert (kl_divergence(q, p) - log_ratio.mean()).abs() < 4 * se + 1e-4


def test_meanfield_elbo_is_analytic_for_each_ctm_guide():
    # With analytic KL and a fixed z the loss only varies through the likelihood sample; here we
    # check the trace holds no guide log-density term, i.e. the KL path was taken without error.
    model = get_model("ctm", input_dim=20, num_topics=K)
    x = torch.poisson(2 * torch.ones(8, 20))
    for name in ("diagonal_normal", "householder", "ctf"):
        guide = get_guide(name, model)
        p = model.prior().expand([8])
        q = guide.site_dist("doc_logits", *guide.heads["doc_logits"](guide.hidden(x)),
                            guide.hidden(x))
        assert kl_divergence(q, p).shape == (8,)
        loss = pyro.infer.TraceMeanField_ELBO().loss(model, guide, x)
        assert torch.isfinite(torch.tensor(loss))


def test_rotation_waits_for_the_ctm_prior_warmup():
    model = get_model("ctm", input_dim=20, num_topics=K, prior_warmup=1)
    guide = get_guide("ctf", model, num_flows=3)  # T odd: U = H(mu) != I even at W_t = I
    loc, scale = torch.randn(4, K), torch.rand(4, K) + 0.1
    q = guide.site_dist("doc_logits", loc, scale, None)
    assert torch.allclose(q.loc, loc)  # warm-up: U = I, the diagonal guide's q
    assert torch.allclose(q.covariance_matrix, torch.diag_embed(scale**2), atol=1e-5)
    # after one epoch of documents the engine's schedule switches model and guide together
    switch = model.default_schedules()["prior_learning"]
    value = switch(Progress(step=2, steps_per_epoch=1, epoch=1.0))
    for module in (model, guide):
        module.set_annealed("prior_learning", value)
    assert bool(model.prior_learning)
    q = guide.site_dist("doc_logits", loc, scale, None)
    u = guide.rotation("doc_logits", loc)
    assert not torch.allclose(u, torch.eye(K).expand(4, K, K), atol=1e-3)
    assert torch.allclose(q.loc, (u @ loc.unsqueeze(-1)).squeeze(-1), atol=1e-5)
    # models without a warm-up (VAE, ProdLDA) are rotated from the start
    other = get_guide("ctf", get_model("prodlda", input_dim=20, num_topics=K), num_flows=3)
    assert not torch.allclose(other.site_dist("doc_logits", loc, scale, None).loc, loc)
