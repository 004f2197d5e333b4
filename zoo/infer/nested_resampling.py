r"""Resampling of weighted particles, and the two numbers we report about weights.

Given log weights :math:`\log w^{1:S}` with normalized weights
:math:`\bar w^s = w^s / \sum_{s'} w^{s'}`, resampling draws ancestor indices :math:`a^{1:S}` with
:math:`\mathbb{E}[\#\{s: a^s = j\}] = S\,\bar w^j`:

* **multinomial**: :math:`a^s \overset{iid}{\sim} \mathrm{Categorical}(\bar w)`;
* **systematic** [1]: one :math:`u \sim U[0, 1)`, and
  :math:`a^s = \min\{j : \sum_{i \le j} \bar w^i > (s - 1 + u)/S\}`, which has lower variance.

After resampling, every particle carries the *average* weight, so that the estimate of the
normalizer is unchanged [2, 3]:

.. math::

    \log w^s \leftarrow \log \frac{1}{S}\sum_{s'} w^{s'}, \qquad
    \hat Z = \frac{1}{S}\sum_s w^s, \qquad
    \mathrm{ESS} = \frac{(\sum_s w^s)^2}{\sum_s (w^s)^2}.

All functions act on the leading (particle) dimension, with no Python loop over particles.

**References:**

1. *Improved particle filter for nonlinear problems*, J. Carpenter, P. Clifford, P. Fearnhead
   (1999), IEE Proc. Radar, Sonar and Navigation 146(1)
2. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302 (Eq. 17)
3. *An Introduction to Sequential Monte Carlo*, N. Chopin, O. Papaspiliopoulos (2020), Springer
"""

from __future__ import annotations

import math

import torch

RESAMPLERS = ("systematic", "multinomial")


def logmeanexp(log_weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`\\log \\frac{1}{S}\\sum_s w^s` along ``dim``."""
    return torch.logsumexp(log_weight, dim) - math.log(log_weight.size(dim))


def effective_sample_size(log_weight: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """:math:`(\\sum w)^2 / \\sum w^2`, between 1 and S (not a percentage)."""
    log_weight = log_weight.detach()
    return torch.exp(2 * torch.logsumexp(log_weight, dim) - torch.logsumexp(2 * log_weight, dim))


def systematic_indices(log_weight: torch.Tensor, generator=None) -> torch.Tensor:
    """Ancestor indices ``(S,)`` by systematic resampling of ``log_weight`` ``(S,)``."""
    _check(log_weight)
    num = log_weight.size(0)
    cdf = torch.softmax(log_weight.detach(), 0).cumsum(0)
    cdf[-1] = 1.0  # guard against round-off leaving the last bin short
    u = torch.rand((), generator=generator, dtype=cdf.dtype)
    points = (u + torch.arange(num, dtype=cdf.dtype)) / num  # (S,), stratified in [0, 1)
    return torch.searchsorted(cdf, points, right=True).clamp(max=num - 1)


def multinomial_indices(log_weight: torch.Tensor, generator=None) -> torch.Tensor:
    """Ancestor indices ``(S,)`` drawn i.i.d. from the normalized weights."""
    _check(log_weight)
    probs = torch.softmax(log_weight.detach(), 0)
    return torch.multinomial(probs, log_weight.size(0), replacement=True, generator=generator)


def resample_indices(log_weight: torch.Tensor, method: str = "systematic", generator=None):
    if method == "systematic":
        return systematic_indices(log_weight, generator)
    if method == "multinomial":
        return multinomial_indices(log_weight, generator)
    raise ValueError(f"Unknown resampling method '{method}'. Choose one of: {RESAMPLERS}.")


def _check(log_weight):
    if log_weight.dim() != 1:
        raise ValueError(
            f"Expected log weights of shape (num_particles,), got {tuple(log_weight.shape)}; "
            "resample one set of particles at a time (flatten or loop over data points)."
        )
    if not torch.isfinite(torch.logsumexp(log_weight.detach(), 0)):
        raise ValueError(
            "Cannot resample: every weight is zero or one is infinite "
            f"(logsumexp = {torch.logsumexp(log_weight.detach(), 0).item()})."
        )
