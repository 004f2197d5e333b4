"""Correlated topic model: its prior, its generative program, and recovery of a planted topic
correlation with the centralized-transformation-flow guide."""

import numpy as np
import pyro
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from zoo.data import Dataset, TensorSplit
from zoo.models.ctm import top_correlated_pairs, topic_correlations
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.registry import get_guide, get_model, list_guides
from zoo.schedules import Progress
from zoo.train import fit

K, V = 6, 60


def test_prior_starts_at_the_laplace_approximation():
    model = get_model("ctm", input_dim=V, num_topics=K)
    loc, scale = dirichlet_laplace_approximation(torch.ones(K))
    assert torch.allclose(model.prior_loc, loc)
    assert torch.allclose(model.prior_covariance(), torch.diag(scale**2), atol=1e-6)
    # centered correlations of an isotropic covariance: -1/(K-1) off the diagonal
    corr = topic_correlations(model)
    expected = torch.full((K, K), -1.0 / (K - 1)).fill_diagonal_(1.0)
    assert torch.allclose(corr, expected, atol=1e-5)
    assert torch.allclose(topic_correlations(model, centered=False), torch.eye(K), atol=1e-6)


@pytest.mark.parametrize("decoder", ["mixture", "product"])
def test_guides_that_fit_and_sampling_from_the_prior(decoder):
    model = get_model("ctm", input_dim=V, num_topics=K, decoder=decoder).eval()
    assert {"diagonal_normal", "householder", "ctf"} <= set(list_guides(model))
    pyro.set_rng_seed(0)
    x = model(batch_size=5, doc_length=40)
    assert x.shape == (5, V) and torch.all(x.sum(-1) == 40)
    assert torch.allclose(model.topic_word_matrix().sum(-1), torch.ones(K))


def test_top_correlated_pairs_orders_by_magnitude():
    corr = torch.eye(4)
    corr[0, 2] = corr[2, 0] = -0.8
    corr[1, 3] = corr[3, 1] = 0.5
    pairs = top_correlated_pairs(corr, n=2)
    assert [(i, j) for i, j, _ in pairs] == [(0, 2), (1, 3)]
    assert pairs[0][2] == pytest.approx(-0.8)


def _planted_corpus(num_docs=3400, doc_length=300, rho=0.9, scale=2.0):
    """Documents drawn from the CTM's own generative program with disjoint 10-word topics and
    Corr(z_0, z_1) = rho, every other pair independent."""
    truth = get_model("ctm", input_dim=V, num_topics=K, learn_prior=False,
                      decoder="mixture").eval()
    beta = torch.full((K, V), 1e-3)
    for k in range(K):
        beta[k, 10 * k: 10 * (k + 1)] = 1.0
    beta = beta / beta.sum(-1, keepdim=True)
    cov = torch.eye(K)
    cov[0, 1] = cov[1, 0] = rho
    cov = scale**2 * cov
    with torch.no_grad():
        truth.topic_logits.copy_(beta.log())
        truth.prior_loc.zero_()
        L = torch.linalg.cholesky(cov)
        truth.prior_log_diag.copy_(L.diagonal().log())
        truth.prior_offdiag.copy_(L)
    pyro.set_rng_seed(0)
    x = truth(batch_size=num_docs, doc_length=doc_length)  # [N, V]
    c = torch.eye(K) - 1.0 / K
    centered = c @ cov @ c
    sd = centered.diagonal().sqrt()
    return x, beta, centered / sd[:, None] / sd[None, :]


def test_recovers_a_planted_correlation():
    x, beta, planted = _planted_corpus()
    data = Dataset("planted-ctm", TensorSplit(x[:3000]), TensorSplit(x[3000:]), "text")
    seed = 1
    torch.manual_seed(seed)
    # the corpus comes from the mixture decoder (Blei & Lafferty's CTM): fit that one
    model = get_model("ctm", input_dim=V, num_topics=K, theta_dropout=0.0, decoder="mixture",
                      prior_warmup=0)
    model.init_topics(data.train.values, torch.Generator().manual_seed(seed))
    guide = get_guide("ctf", model, hidden_dims=(50,))
    history = fit(model, guide, data, epochs=12, batch_size=100, lr=0.01, objective="meanfield",
                  seed=seed, progress=False)
    assert history[-1]["heldout_elbo"] > history[0]["heldout_elbo"]

    # Hungarian matching of learned to planted topics on the cosine of their word distributions
    learned = torch.nn.functional.normalize(model.topic_words().detach(), dim=-1)
    cosine = (learned @ torch.nn.functional.normalize(beta, dim=-1).T).numpy()  # [K, K]
    rows, cols = linear_sum_assignment(-cosine)
    assert cosine[rows, cols].min() > 0.9
    perm = np.empty(K, dtype=int)
    perm[cols] = rows  # learned topic matched to planted topic j
    corr = topic_correlations(model)[perm][:, perm]

    assert corr[0, 1] > 0.5  # planted centered value: 0.83
    independent = torch.triu_indices(K - 2, K - 2, offset=1) + 2
    others = corr[independent[0], independent[1]]
    assert others.abs().max() < 0.3  # planted centered value: -0.13
    assert (others - planted[independent[0], independent[1]]).abs().max() < 0.2


def test_correlation_prior_keeps_every_topic_at_the_same_mean_and_variance():
    full = get_model("ctm", input_dim=V, num_topics=K, prior_form="full")
    model = get_model("ctm", input_dim=V, num_topics=K)
    assert model.config["prior_form"] == "correlation"
    offdiag = torch.randn(K, K, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for m in (full, model):
            m.prior_loc.copy_(torch.arange(K, dtype=torch.float32))
            m.prior_log_diag.copy_(torch.linspace(-1.0, 1.0, K))
            m.prior_offdiag.copy_(offdiag)
    cov, raw = model.prior_covariance(), full.prior_covariance()
    # equal marginals: the mean variance of the unconstrained factor; its correlations unchanged
    assert torch.allclose(cov.diagonal(), raw.diagonal().mean().expand(K), rtol=1e-5)
    sd = raw.diagonal().sqrt()
    assert torch.allclose(cov / cov.diagonal().mean(), raw / sd[:, None] / sd[None, :], atol=1e-5)
    assert torch.allclose(model.prior_mean(), torch.full((K,), (K - 1) / 2))
    assert torch.allclose(full.prior_mean(), full.prior_loc)
    scale_tril = model.prior_scale_tril()
    assert torch.equal(scale_tril, torch.tril(scale_tril)) and (scale_tril.diagonal() > 0).all()
    # the gradient reaches every stored parameter
    model.prior().log_prob(torch.randn(3, K)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in (model.prior_loc, model.prior_log_diag, model.prior_offdiag))
    with pytest.raises(ValueError, match="prior_form"):
        get_model("ctm", prior_form="diagonal")


def test_equal_marginals_mean_the_same_prior_under_both_forms():
    # a planted covariance with equal variances (tests, tutorial 06) is not altered
    cov = 4.0 * (0.9 * torch.ones(K, K) + 0.1 * torch.eye(K))
    L = torch.linalg.cholesky(cov)
    model = get_model("ctm", input_dim=V, num_topics=K)
    with torch.no_grad():
        model.prior_log_diag.copy_(L.diagonal().log())
        model.prior_offdiag.copy_(L)
    assert torch.allclose(model.prior_covariance(), cov, atol=1e-4)


def test_correlation_plot(tmp_path):
    from zoo.plots import plot_topic_correlations

    model = get_model("ctm", input_dim=V, num_topics=K)
    with torch.no_grad():
        model.prior_offdiag[1, 0] = 1.0
    corr = topic_correlations(model)
    fig = plot_topic_correlations(corr, labels=[f"t{k}" for k in range(K)], n_pairs=4,
                                  path=tmp_path / "corr.png")
    assert (tmp_path / "corr.png").stat().st_size > 0 and len(fig.axes) == 3
    with pytest.raises(ValueError, match="square"):
        plot_topic_correlations(torch.zeros(2, 3))


@pytest.mark.parametrize("decoder", ["mixture", "product"])
def test_word_log_probs_are_normalized(decoder):
    model = get_model("ctm", input_dim=V, num_topics=K, decoder=decoder).eval()
    log_p = model.word_log_probs(torch.randn(2, 3, K))
    assert log_p.shape == (2, 3, V)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(2, 3), atol=1e-5)
    with pytest.raises(ValueError, match="decoder must be"):
        get_model("ctm", decoder="sum")


def test_product_topics_are_the_batch_normalized_rows_less_the_background():
    model = get_model("ctm", input_dim=V, num_topics=K)
    assert model.decoder == "product" and model.config["theta_dropout"] == 0.6
    with torch.no_grad():
        model.topic_logits.normal_()
        model.background.normal_()
        model.logit_norm.running_mean.normal_()
        model.logit_norm.running_var.uniform_(0.5, 2.0)
    model.eval()
    # a document made of topic k alone (logits ~ one-hot) emits the topic times the background
    z = 30.0 * torch.eye(K)
    emitted = model.word_log_probs(z).exp()  # [K, V]
    expected = model.topic_word_matrix() * model.background.exp()
    expected = expected / expected.sum(-1, keepdim=True)
    assert torch.allclose(emitted, expected, atol=1e-4)


def _prior_grads(model, x, num_data):
    model.train()
    for p in model.parameters():
        p.grad = None
    trace = pyro.poutine.trace(model).get_trace(x, num_data)
    trace.log_prob_sum().backward()
    return model.prior_offdiag.grad, model.prior_loc.grad


def test_prior_is_held_fixed_during_the_warmup_then_learned():
    model = get_model("ctm", input_dim=V, num_topics=K, prior_warmup=1.5)
    switch = model.default_schedules()["prior_learning"]
    x = torch.poisson(3 * torch.ones(10, V))
    for seen in (0, 10, 20):  # batches of 10 after 0, 10, 20 documents: within 1.5 epochs of 20
        model.set_annealed("prior_learning", switch(Progress(1, 2, epoch=seen / 20)))
        offdiag, loc = _prior_grads(model, x, num_data=20)
        assert offdiag is None and loc is None
    model.set_annealed("prior_learning", switch(Progress(4, 2, epoch=30 / 20)))  # 30 seen: over
    offdiag, loc = _prior_grads(model, x, num_data=20)
    assert offdiag is not None and loc.abs().sum() > 0
    assert "prior_learning" in model.state_dict()  # a checkpoint keeps the switch
    never = get_model("ctm", input_dim=V, num_topics=K, learn_prior=False, prior_warmup=0)
    assert never.default_schedules() == {}
    assert _prior_grads(never, x, num_data=20) == (None, None)
    with pytest.raises(ValueError, match="prior_warmup"):
        get_model("ctm", prior_warmup=-1)


def test_word_counts_density_is_the_multinomial():
    from zoo.models.word_counts import WordCounts

    logits = torch.randn(3, V)
    x = torch.distributions.Multinomial(40, logits=logits).sample()
    expected = torch.distributions.Multinomial(40, logits=logits).log_prob(x)
    assert torch.allclose(WordCounts(logits).log_prob(x), expected, atol=1e-4)
    assert WordCounts(logits, total_count=7).sample((2,)).sum(-1).eq(7).all()
