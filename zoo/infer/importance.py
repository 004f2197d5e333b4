r"""Importance-sampled marginal likelihood, its diagnostics, and posterior draws by resampling.

For a model :math:`p(x, z)` and a guide :math:`q(z \mid x)` used as proposal, with K particles
:math:`z_k \sim q(\cdot \mid x_n)` and weights :math:`w_{k,n} = p(x_n, z_k) / q(z_k \mid x_n)`,

.. math::

    \log \hat p(x_n) = \log \frac1K \sum_{k=1}^K w_{k,n}, \qquad
    \mathbb{E}\big[\log \hat p(x_n)\big] = \mathcal{L}_K(x_n) \le \log p(x_n),

the IWAE bound :math:`\mathcal{L}_K`, which rises with K to :math:`\log p(x_n)` [1, Thm. 1];
with K = 5,000 this is the field's standard test log-likelihood [1]. Particles are a vectorized
plate (:mod:`zoo.poutine.particles_messenger`) processed in chunks of ``chunk_size``; the
running statistics :math:`\log\sum_k w_k`, :math:`\log\sum_k w_k^2` and the largest weights are
merged across chunks, so memory is bounded by ``chunk_size x batch_size`` whatever K is.

Diagnostics per data point: the effective sample size and the delta-method standard error of
:math:`\log \hat p` (:mod:`zoo.infer.resampling`), and the Pareto :math:`\hat k` of the weights'
upper tail (PSIS [2, 3]): :math:`\hat k < 0.5` good, :math:`0.5 \le \hat k \le 0.7` usable,
:math:`\hat k > 0.7` the estimate is unreliable (the variance of the weights may be infinite).

Weights are per data point when every latent is local; with a global latent they are joint over
the batch, and :func:`log_likelihood` then needs the whole data set as one batch.

**References:**

1. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
2. *Pareto Smoothed Importance Sampling*, A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry
   (2015), arXiv:1507.02646
3. *Yes, but Did It Work?: Evaluating Variational Inference*, Y. Yao, A. Vehtari, D. Simpson,
   A. Gelman (2018), arXiv:1802.02538
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from pyro import poutine
from pyro.ops.stats import fit_generalized_pareto
from pyro.poutine.util import site_is_subsample

from zoo.infer.resampling import log_mean_exp_stderr, resample
from zoo.models.base import evaluating, like_module
from zoo.poutine import LogWeightMessenger, ResampleMessenger, max_plate_nesting, particles


def particle_log_weights(model, guide, args, kwargs, num_particles, mpn, plate_name="data"):
    """Draw K guide particles and weigh them: returns ``(weights, guide_trace)`` where
    ``weights`` is a :class:`~zoo.poutine.LogWeightMessenger` (``.local [K, B]``, ``.glob
    [K]``) and the trace holds values of batch shape ``[K, ...]``. Gradients flow."""
    with particles(num_particles=num_particles, max_plate_nesting=mpn):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        weights = LogWeightMessenger(guide_trace, num_particles, -(mpn + 1), plate_name)
        with weights:
            poutine.replay(model, trace=guide_trace)(*args, **kwargs)
    return weights, guide_trace


def point_log_weights(weights: LogWeightMessenger) -> torch.Tensor:
    """``[K, B]`` per-data-point log weights, or ``[K, 1]`` joint ones when a latent is global."""
    if weights.has_global:
        return weights.total().unsqueeze(-1)
    return weights.local.expand(weights.num_particles, weights.batch_size)


def pareto_khat(top_log_weights: torch.Tensor, num_particles: int) -> torch.Tensor:
    """PSIS :math:`\\hat k` per column from the largest ``tail_size(K) + 1`` log weights
    ``[M + 1, B]`` (any order) of K particles, as ``pyro.infer.importance.psis_diagnostic``
    computes it. NaN where the tail has fewer than 5 weights or the weights are equal up to
    rounding (an exact proposal: bounded weights)."""
    m = tail_size(num_particles)
    # on the CPU: M + 1 numbers per column, fitted one column at a time with Python scalars,
    # and Pyro's fit_generalized_pareto makes its constants there
    top = top_log_weights.detach().cpu().double().sort(0, descending=True).values[: m + 1]
    khat = torch.full((top.shape[1],), math.nan, dtype=torch.double)
    for n in range(top.shape[1]):
        lw = top[:, n] - top[0, n]
        cutoff = max(math.log(1e-15), lw[m].item()) if lw.shape[0] > m else math.log(1e-15)
        tail = lw[:m][lw[:m] > cutoff]
        excess = tail.exp() - math.exp(cutoff)
        # log weights within 1e-4 of each other are equal up to float32 rounding: bounded weights
        if tail.shape[0] >= 5 and -lw[min(m, lw.shape[0] - 1)] > 1e-4:
            khat[n] = fit_generalized_pareto(excess)[0]
    return khat


def tail_size(num_particles: int) -> int:
    """M = ceil(min(0.2 K, 3 sqrt(K))), the tail PSIS fits [2]."""
    return int(math.ceil(min(0.2 * num_particles, 3.0 * math.sqrt(num_particles))))


@dataclass
class ImportanceResult:
    """Per-data-point estimates, each ``[N]`` (``[1]`` for a joint estimate), on the CPU
    whatever device the model ran on."""

    log_likelihood: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor
    khat: torch.Tensor
    num_particles: int
    joint: bool = False

    def summary(self) -> dict:
        """The keys ``zoo evaluate`` adds to ``summary.json`` (means over data points)."""
        n = self.log_likelihood.shape[0]
        khat = self.khat[~torch.isnan(self.khat)]
        return {
            "is_log_likelihood": self.log_likelihood.mean().item(),
            # standard error of the mean of independent per-point estimates
            "is_log_likelihood_stderr": (self.stderr.pow(2).sum().sqrt() / n).item(),
            "ess_mean": self.ess.mean().item(),
            "khat_mean": khat.mean().item() if khat.numel() else math.nan,
            "khat_max": khat.max().item() if khat.numel() else math.nan,
            "num_particles": self.num_particles,
        }


def point_batches(data, batch_size: int):
    """Consecutive batches of data points: of a split (``.batch``, dense) or of a tensor."""
    n = len(data)
    for start in range(0, n, batch_size):
        index = torch.arange(start, min(start + batch_size, n))
        yield data.batch(index) if hasattr(data, "batch") else data[index]


def _like_model(x: torch.Tensor, model) -> torch.Tensor:
    """``x`` on the model's device and in its floating-point type (a program that is not a
    module takes ``x`` as it is)."""
    return like_module(x, model) if isinstance(model, torch.nn.Module) else x


class RunningWeights:
    r"""Merge per-chunk log weights ``[k, B]`` into :math:`\log\sum w`, :math:`\log\sum w^2`
    and the ``keep`` largest log weights, so that K particles never sit in memory at once; the
    merged statistics do not depend on how the K particles were split into chunks."""

    def __init__(self, keep: int = 0):
        self.keep = keep
        self.count = 0
        self.lse = self.lse2 = self.top = None

    def update(self, lw: torch.Tensor) -> None:
        """Merge a chunk of log weights ``lw`` of shape ``[k, B]``."""
        lw = lw.detach().double()  # [k, B]
        self.count += lw.shape[0]
        lse, lse2 = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)  # [B]
        self.lse = lse if self.lse is None else torch.logaddexp(self.lse, lse)
        self.lse2 = lse2 if self.lse2 is None else torch.logaddexp(self.lse2, lse2)
        if self.keep:
            top = lw if self.top is None else torch.cat([self.top, lw], 0)
            self.top = top.topk(min(self.keep, top.shape[0]), dim=0).values  # [<=keep, B]


def log_likelihood(model, guide, data, num_particles: int = 1000, chunk_size: int = 500,
                   batch_size: int = 50, compute_khat: bool = True) -> ImportanceResult:
    r"""Importance-sampled :math:`\log p(x_n)` of every row of ``data`` (a tensor ``[N, D]`` or
    a :class:`~zoo.data.Split`), with ``num_particles`` guide particles drawn ``chunk_size`` at a
    time; modules are put in eval mode and no gradients are kept. Batches go to the model's
    device and floating-point type; the particles stay there, the results come back to the CPU.

    With a global latent the weights are joint: pass ``batch_size >= len(data)`` and get one
    joint estimate of :math:`\log p(x_{1..N})`.
    """
    chunk_size = min(int(chunk_size), int(num_particles))
    n_data = len(data)
    keep = tail_size(num_particles) + 1 if compute_khat else 0
    plate = getattr(model, "plate_name", "data")
    runs, mpn, joint = [], None, False
    with evaluating(model, guide):
        for x in point_batches(data, batch_size):
            x = _like_model(x, model)
            if mpn is None:
                mpn = max_plate_nesting(model, guide, x)
            run = RunningWeights(keep)
            for start in range(0, num_particles, chunk_size):
                k = min(chunk_size, num_particles - start)
                weights, _ = particle_log_weights(model, guide, (x,), {}, k, mpn, plate)
                if weights.has_global and x.shape[0] < n_data:
                    raise ValueError(
                        "the model has a global latent, so importance weights are joint over the "
                        f"batch; pass batch_size >= {n_data} to estimate log p(x_1..N) jointly."
                    )
                joint = weights.has_global
                run.update(point_log_weights(weights))  # [k, B]
            runs.append(run)
    # [N] each, on the CPU: the results are a few numbers per data point
    lse, lse2 = torch.cat([r.lse for r in runs]).cpu(), torch.cat([r.lse2 for r in runs]).cpu()
    ess = torch.exp(2 * lse - lse2)
    khat = (torch.cat([pareto_khat(r.top, num_particles) for r in runs]) if compute_khat
            else torch.full_like(lse, math.nan))
    return ImportanceResult(
        log_likelihood=(lse - math.log(num_particles)).float(),
        stderr=log_mean_exp_stderr(ess, num_particles).float(),
        ess=ess.float(),
        khat=khat.float(),
        num_particles=num_particles,
        joint=joint,
    )


def importance_summary(model, guide, split, num_particles=1000, chunk_size=500,
                       batch_size=50) -> dict:
    """What ``zoo evaluate RUN --num-particles K`` adds to the summary: ``is_log_likelihood``
    (mean over data points), ``is_log_likelihood_stderr``, ``ess_mean``, ``khat_mean``,
    ``khat_max`` and ``num_particles``."""
    result = log_likelihood(model, guide, split, num_particles, chunk_size, batch_size)
    return result.summary()


def sample_posterior(model, guide, data, num_samples: int = 1000, num_particles: int | None = None,
                     method: str = "systematic", seed: int | None = None):
    """Equally weighted posterior draws of every latent site for each row of ``data``
    (``[B, D]``, one batch, all K particles in memory) by sampling-importance-resampling,
    as an :class:`arviz.InferenceData` whose posterior group has one chain of ``num_samples``
    draws and dims ``(data, <site>_dim_0, ...)``; ``sample_stats`` holds the ESS per data point.
    """
    import arviz as az

    num_particles = num_samples if num_particles is None else num_particles
    plate = getattr(model, "plate_name", "data")
    if seed is not None:
        torch.manual_seed(seed)
    x = data.dense() if hasattr(data, "dense") else data
    x = _like_model(x, model)
    with evaluating(model, guide):
        mpn = max_plate_nesting(model, guide, x)
        weights, guide_trace = particle_log_weights(
            model, guide, (x,), {}, num_particles, mpn, plate
        )
        lw = point_log_weights(weights)  # [K, B] (or [K, 1] joint)
        index = resample(lw, num_samples, method)  # [N, B] or [N, 1]
        if weights.has_global:
            index = index[:, 0]  # [N]: whole particles
        with particles(num_particles=num_samples, max_plate_nesting=mpn):
            with ResampleMessenger(guide_trace, index, -(mpn + 1), plate):
                trace = poutine.trace(model).get_trace(x)
    posterior, dims = {}, {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        value = site["value"].detach().cpu().numpy()  # [N, (B,) *event]
        posterior[name] = value[np.newaxis]  # [chain=1, draw=N, ...]
        local = any(f.name == plate for f in site["cond_indep_stack"])
        event = [f"{name}_dim_{i}" for i in range(site["fn"].event_dim)]
        dims[name] = (["data"] if local else []) + event
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    return az.from_dict(
        posterior=posterior,
        sample_stats={"importance_ess": ess.cpu().numpy()[np.newaxis, np.newaxis].repeat(
            num_samples, axis=1)},
        dims=dict(dims, importance_ess=["data"] if not weights.has_global else ["batch"]),
        attrs={"num_particles": num_particles, "method": method},
    )
