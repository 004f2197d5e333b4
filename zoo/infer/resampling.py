r"""Resampling algorithms and weight diagnostics for importance sampling.

Given log weights :math:`\log w_k` of K particles (along dim 0, any batch shape after it), with
normalized weights :math:`\bar w_k = w_k / \sum_j w_j`:

* **multinomial** resampling draws N indices i.i.d. from :math:`\mathrm{Categorical}(\bar w)`;
* **systematic** resampling draws one :math:`u \sim \mathcal{U}[0, 1)` and takes the N points
  :math:`(u + j) / N`, :math:`j = 0..N-1`, through the inverse CDF of :math:`\bar w` [1].

Both are unbiased: the count :math:`c_k` of particle k has :math:`\mathbb{E}[c_k] = N \bar w_k`;
the multinomial variance is :math:`N \bar w_k (1 - \bar w_k)`, the systematic one is at most
1/4 (each count is :math:`\lfloor N \bar w_k \rfloor` or that plus one) [1, 2].

The effective sample size [3] and the delta-method standard error of :math:`\log \hat Z` are

.. math::

    \mathrm{ESS} = \frac{(\sum_k w_k)^2}{\sum_k w_k^2}, \qquad
    \operatorname{se}(\log \hat Z) \approx \sqrt{\frac{K / \mathrm{ESS} - 1}{K - 1}},

where :math:`\hat Z = \frac1K \sum_k w_k` and the second follows from
:math:`\operatorname{Var}\hat Z = \widehat{\operatorname{Var}}(w)/K` and
:math:`\operatorname{se}(\log \hat Z) \approx \operatorname{se}(\hat Z) / \hat Z`.

**References:**

1. *Comparison of Resampling Schemes for Particle Filtering*, R. Douc, O. Cappé, E. Moulines
   (2005), arXiv:cs/0507025
2. *On Resampling Algorithms for Particle Filters*, J. D. Hol, T. B. Schön, F. Gustafsson (2006)
3. *Monte Carlo Strategies in Scientific Computing*, J. S. Liu (2001), Sec. 2.5.3
"""

from __future__ import annotations

import math

import torch


def _check(log_weights: torch.Tensor) -> torch.Tensor:
    if log_weights.dim() < 1 or log_weights.shape[0] < 1:
        raise ValueError("log_weights needs at least one particle along dim 0")
    if torch.isnan(log_weights).any():
        raise ValueError("log_weights contains NaN; check the model and guide log densities.")
    if (log_weights == -math.inf).all(0).any():
        raise ValueError("every particle has weight 0 for some data point; nothing to resample.")
    return log_weights.detach()


def normalized_weights(log_weights: torch.Tensor) -> torch.Tensor:
    """:math:`\\bar w_k` along dim 0, computed stably."""
    return torch.softmax(_check(log_weights), dim=0)


def _draw_device(generator, like: torch.Tensor) -> torch.device:
    """Where the random numbers are drawn: on ``generator``'s device, else beside ``like``."""
    return like.device if generator is None else generator.device


def multinomial(log_weights: torch.Tensor, num_samples: int | None = None, generator=None):
    """Indices ``[N, *batch]`` drawn i.i.d. with probabilities ``softmax(log_weights, 0)``,
    on the device of ``log_weights`` (drawn where ``generator`` lives, when one is given).

    :param log_weights: ``[K, *batch]``
    :param int num_samples: N (default K)
    """
    probs = normalized_weights(log_weights)  # [K, *batch]
    num_samples = probs.shape[0] if num_samples is None else int(num_samples)
    flat = probs.reshape(probs.shape[0], -1).T  # [batch, K]
    flat = flat.to(_draw_device(generator, flat))
    index = torch.multinomial(flat, num_samples, replacement=True, generator=generator)
    index = index.to(probs.device)
    return index.T.reshape((num_samples,) + probs.shape[1:])  # [N, *batch]


def systematic(log_weights: torch.Tensor, num_samples: int | None = None, generator=None):
    """Indices ``[N, *batch]`` by systematic resampling (one uniform per batch element), on
    the device of ``log_weights`` (the uniforms drawn where ``generator`` lives, when one is
    given).

    :param log_weights: ``[K, *batch]``
    :param int num_samples: N (default K)
    """
    probs = normalized_weights(log_weights)  # [K, *batch]
    num_samples = probs.shape[0] if num_samples is None else int(num_samples)
    flat = probs.reshape(probs.shape[0], -1).T.to(torch.float64)  # [batch, K]
    cdf = flat.cumsum(-1)
    cdf = cdf / cdf[:, -1:]  # exact 1 at the end
    u = torch.rand(flat.shape[0], 1, dtype=torch.float64, generator=generator,
                   device=_draw_device(generator, flat)).to(flat.device)  # [batch, 1]
    steps = torch.arange(num_samples, dtype=torch.float64, device=flat.device)
    points = (u + steps) / num_samples  # [batch, N]
    index = torch.searchsorted(cdf, points, right=True).clamp_(max=flat.shape[1] - 1)
    return index.T.reshape((num_samples,) + probs.shape[1:])  # [N, *batch]


RESAMPLERS = {"multinomial": multinomial, "systematic": systematic}


def resample(log_weights, num_samples=None, method: str = "systematic", generator=None):
    """Dispatch to :func:`multinomial` or :func:`systematic` by name."""
    try:
        fn = RESAMPLERS[method]
    except KeyError:
        raise ValueError(
            f"Unknown resampling method {method!r}; choose from {sorted(RESAMPLERS)}."
        ) from None
    return fn(log_weights, num_samples, generator)


def resample_ancestors(log_weight: torch.Tensor, method: str = "systematic", generator=None):
    r"""One set of ``S`` particles resampled by their log weights ``(S,)``: the ancestors
    ``(S,)`` and the log weights after resampling ``(S,)``, all equal to
    :math:`\log \hat Z = \log \frac1S \sum_s w^s` (so :math:`\hat Z` is unchanged)."""
    log_weight = log_weight.detach()
    if log_weight.dim() != 1:
        raise ValueError(
            f"Expected log weights of shape (num_particles,), got {tuple(log_weight.shape)}; "
            "resample one set of particles at a time.")
    indices = resample(log_weight, method=method, generator=generator)  # (S,)
    return indices, log_mean_exp(log_weight).expand(log_weight.size(0)).clone()


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    """Kish's ESS :math:`(\\sum w)^2 / \\sum w^2` along dim 0, in ``[1, K]``."""
    lw = _check(log_weights)
    return torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))


def log_mean_exp(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`\\log \\frac1K \\sum_k e^{\\ell_k}` along ``dim`` (differentiable)."""
    return torch.logsumexp(log_weights, dim) - math.log(log_weights.shape[dim])


def log_mean_exp_stderr(ess: torch.Tensor, num_particles: int) -> torch.Tensor:
    """Delta-method standard error of :math:`\\log \\hat Z` from the ESS of K weights."""
    if num_particles < 2:
        return torch.full_like(ess, math.nan)
    return ((num_particles / ess - 1).clamp(min=0) / (num_particles - 1)).sqrt()
