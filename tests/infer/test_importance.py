"""Tests of the importance-sampled log-likelihood, its diagnostics, resampling and SIR posterior
draws (zoo/infer/importance.py, zoo/infer/resampling.py), checked on exact PPCA."""

import math

import arviz as az
import pyro
import pytest
import torch

from zoo.infer.importance import (
    RunningWeights,
    importance_summary,
    log_likelihood,
    pareto_khat,
    sample_posterior,
    tail_size,
)
from zoo.infer.resampling import (
    effective_sample_size,
    log_mean_exp_stderr,
    multinomial,
    resample,
    systematic,
)
from zoo.models.ppca import ExactPosteriorGuide


@pytest.fixture
def ppca(make_ppca):
    return make_ppca()


def test_is_estimate_within_005_nats_at_k5000(ppca):
    model, x = ppca
    guide = ExactPosteriorGuide(model, inflate=1.5, shift=0.3)  # imperfect, finite variance
    result = log_likelihood(model, guide, x, num_particles=5000, chunk_size=1000, batch_size=4)
    exact = model.log_marginal(x).detach()
    err = (result.log_likelihood - exact).abs()
    assert err.max() < 0.05, err
    assert (err < 5 * result.stderr + 1e-3).all()  # the reported error bar covers the error
    assert (result.ess > 100).all() and (result.ess <= 5000).all()
    assert (result.khat < 0.7).all()
    summary = result.summary()
    assert abs(summary["is_log_likelihood"] - exact.mean().item()) < 0.05
    assert set(summary) >= {"is_log_likelihood", "is_log_likelihood_stderr", "ess_mean",
                            "khat_mean", "khat_max"}


def test_exact_guide_gives_exact_evidence_and_full_ess(ppca):
    model, x = ppca
    result = log_likelihood(model, ExactPosteriorGuide(model), x, num_particles=64, chunk_size=10)
    torch.testing.assert_close(result.log_likelihood, model.log_marginal(x).detach(),
                               atol=2e-4, rtol=0)
    torch.testing.assert_close(result.ess, torch.full((8,), 64.0), atol=1e-2, rtol=0)


def test_running_weights_do_not_depend_on_chunks():
    torch.manual_seed(0)
    lw = 3 * torch.randn(97, 5)
    whole = RunningWeights(keep=12)
    whole.update(lw)
    for chunk in (1, 7, 50):
        run = RunningWeights(keep=12)
        for start in range(0, 97, chunk):
            run.update(lw[start : start + chunk])
        torch.testing.assert_close(run.lse, whole.lse)
        torch.testing.assert_close(run.lse2, whole.lse2)
        torch.testing.assert_close(run.top, whole.top)
    torch.testing.assert_close(whole.lse, torch.logsumexp(lw.double(), 0))


def test_estimates_identical_with_different_chunk_sizes(ppca):
    """Same seed, same particles: one particle is 8 x 2 = 16 normal draws, and torch's CPU
    generator yields the same stream whether 16-draw blocks come in one call or several, so
    every chunking sees identical particles and must give identical estimates."""
    model, x = ppca
    guide = ExactPosteriorGuide(model, inflate=1.3)
    results = []
    for chunk in (2000, 300, 7):
        pyro.set_rng_seed(1)
        results.append(log_likelihood(model, guide, x, num_particles=2000, chunk_size=chunk,
                                      batch_size=8))
    for r in results[1:]:
        torch.testing.assert_close(r.log_likelihood, results[0].log_likelihood, rtol=0, atol=1e-6)
        torch.testing.assert_close(r.ess, results[0].ess, rtol=1e-6, atol=0)
        torch.testing.assert_close(r.khat, results[0].khat, rtol=0, atol=1e-5)


def test_chunk_and_batch_sizes_agree_statistically(ppca):
    model, x = ppca
    guide = ExactPosteriorGuide(model, inflate=1.3)
    a = log_likelihood(model, guide, x, num_particles=2000, chunk_size=2000, batch_size=8)
    b = log_likelihood(model, guide, x, num_particles=2000, chunk_size=300, batch_size=3)
    tol = 5 * (a.stderr**2 + b.stderr**2).sqrt() + 1e-4
    assert ((a.log_likelihood - b.log_likelihood).abs() < tol).all()


def test_ess_and_stderr_limits():
    assert torch.allclose(effective_sample_size(torch.zeros(10, 3)), torch.tensor(10.0))
    one = torch.full((10,), -math.inf)
    one[4] = 2.0
    assert effective_sample_size(one).item() == pytest.approx(1.0)
    assert log_mean_exp_stderr(torch.tensor(10.0), 10).item() == 0.0
    with pytest.raises(ValueError, match="NaN"):
        effective_sample_size(torch.tensor([0.0, math.nan]))


@pytest.mark.parametrize("method", ["multinomial", "systematic"])
def test_resampling_keeps_expected_counts(method):
    """E[count_k] = N w_k; the tolerance is 5 standard errors of the mean count over R runs
    (multinomial: Var = N w (1 - w); systematic: Var <= 1/4)."""
    torch.manual_seed(1)
    w = torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03])
    reps, n = 4000, 20
    lw = w.log()[:, None].expand(5, reps)  # R independent resamplings at once
    index = resample(lw, n, method)  # [N, R]
    counts = torch.nn.functional.one_hot(index, 5).sum(0).double()  # [R, K]
    expected = n * w.double()
    var = expected * (1 - w.double()) if method == "multinomial" else torch.full((5,), 0.25)
    assert ((counts.mean(0) - expected).abs() < 5 * (var / reps).sqrt()).all()
    if method == "systematic":  # each count is floor(N w) or floor(N w) + 1
        low = torch.floor(expected)
        assert ((counts >= low) & (counts <= low + 1)).all()
    with pytest.raises(ValueError, match="Unknown resampling"):
        resample(lw, n, "stratified-typo")


def test_resampling_never_picks_zero_weights():
    lw = torch.tensor([-math.inf, 0.0, -math.inf, 0.0])
    for fn in (multinomial, systematic):
        assert set(fn(lw, 200).tolist()) <= {1, 3}


def test_pareto_khat_flags_heavy_tails():
    torch.manual_seed(2)
    k = 4000
    light = torch.randn(k, 1) * 0.3  # log-normal weights with small sigma: k-hat well below 0.5
    heavy = (torch.distributions.Pareto(1.0, 1.0 / 0.9).sample((k, 1))).log()  # true k = 0.9
    tops = [w.topk(tail_size(k) + 1, 0).values for w in (light, heavy)]
    assert pareto_khat(tops[0], k).item() < 0.5
    assert pareto_khat(tops[1], k).item() > 0.7


def test_sir_draws_match_the_exact_posterior(ppca):
    model, x = ppca
    x3 = x[:3]
    guide = ExactPosteriorGuide(model, inflate=1.4, shift=0.2)
    idata = sample_posterior(model, guide, x3, num_samples=4000, num_particles=4000, seed=0)
    assert isinstance(idata, az.InferenceData)
    draws = torch.as_tensor(idata.posterior["z"].values[0])  # [N, 3, 2]
    post = model.posterior(x3)
    ess = torch.as_tensor(idata.sample_stats["importance_ess"].values[0, 0])  # [3]
    exact_var = post.covariance_matrix.diagonal(dim1=-2, dim2=-1).detach()  # [3, 2]
    mean_tol = 5 * (exact_var / ess[:, None]).sqrt()
    assert ((draws.mean(0) - post.loc.detach()).abs() < mean_tol).all()
    var_tol = 5 * exact_var * (2 / ess[:, None]).sqrt()
    assert ((draws.var(0) - exact_var).abs() < var_tol).all()
    table = az.summary(idata, kind="stats")
    assert len(table) == 6  # 3 data points x 2 latent dims


def test_importance_summary_on_a_split(ppca):
    from zoo.data import TensorSplit

    model, x = ppca
    summary = importance_summary(model, ExactPosteriorGuide(model), TensorSplit(x),
                                 num_particles=30, chunk_size=10, batch_size=5)
    assert summary["is_log_likelihood"] == pytest.approx(model.log_marginal(x).mean().item(),
                                                         abs=1e-3)
    assert summary["num_particles"] == 30


class GlobalMean(torch.nn.Module):
    """theta ~ N(0, 1), x_n ~ N(theta, 1): a global latent, so weights are joint."""

    plate_name = "data"

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # gives the module a device

    def forward(self, x):
        theta = pyro.sample("theta", pyro.distributions.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(theta, 1.0), obs=x)


def global_guide(x):
    n = x.shape[0]  # exact posterior N(sum x / (n + 1), 1 / (n + 1)), widened
    pyro.sample("theta", pyro.distributions.Normal(x.sum() / (n + 1), 1.5 / (n + 1) ** 0.5))


def test_global_latent_gives_a_joint_estimate_and_joint_resampling():
    pyro.set_rng_seed(0)
    x = torch.tensor([0.5, 1.5, 0.8, 2.0])
    model = GlobalMean()
    exact = pyro.distributions.MultivariateNormal(
        torch.zeros(4), torch.eye(4) + torch.ones(4, 4)).log_prob(x)
    result = log_likelihood(model, global_guide, x, num_particles=2000, chunk_size=300,
                            batch_size=4)
    assert result.joint and result.log_likelihood.shape == (1,)
    assert abs(result.log_likelihood.item() - exact.item()) < 5 * result.stderr.item() + 1e-3
    with pytest.raises(ValueError, match="batch_size >= 4"):
        log_likelihood(model, global_guide, x, num_particles=10, batch_size=2)
    idata = sample_posterior(model, global_guide, x, num_samples=3000, seed=1)
    draws = torch.as_tensor(idata.posterior["theta"].values[0])  # [N]
    ess = idata.sample_stats["importance_ess"].values[0, 0, 0]
    assert abs(draws.mean().item() - x.sum().item() / 5) < 5 * (0.2 / ess) ** 0.5  # N(x̄', 1/5)
