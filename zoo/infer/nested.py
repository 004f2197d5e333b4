r"""Nested variational inference: per-level objectives over properly weighted particles.

One sweep of nested importance sampling [1] draws :math:`z_0 \sim \gamma_0` (weight 1) and, at
each level :math:`k = 1..K-1`, extends the particles with the forward kernel and reweights:

.. math::

    z_k \sim q_k(\cdot \mid z_{k-1}), \qquad
    v_k = \frac{\gamma_k(z_k)\, r_{k-1}(z_{k-1} \mid z_k)}{\gamma_{k-1}(z_{k-1})\,
    q_k(z_k \mid z_{k-1})}, \qquad w_k = v_k\, w_{k-1},

so :math:`(w_k, z_k)` is properly weighted for :math:`\gamma_k` ([1] Eq. 8) and
:math:`\hat Z_k = \frac1S \sum_s w_k^s` is unbiased for :math:`Z_k`. With ``resample=True``
(NVIR) the particles are resampled before every level but the first
(:class:`~zoo.poutine.nested_resample_messenger.NestedResampleMessenger`).

Each level has its own loss, from the divergence between :math:`\check\pi_k` and
:math:`\hat\pi_k` ([1] Eq. 6), with self-normalized weights
:math:`\bar w_{k-1} = \mathrm{softmax}(\log w_{k-1})`, :math:`\bar w_k =
\mathrm{softmax}(\log w_{k-1} + \log v_k)` and :math:`\mathrm{sg}` a stop-gradient:

* ``nvi-rkl`` (reverse KL, [1] Eqs. 12-13 with a baseline; surrogate of [3] ``rkl_loss``):

  .. math::

      L_k = -\sum_s \bar w_{k-1}^s\Big[\log v_k^s + \big(1 + \mathrm{sg}\log v_k^s -
      \textstyle\sum_{s'}\bar w_{k-1}^{s'}\mathrm{sg}\log v_k^{s'}\big)\log\gamma_{k-1}(z_{k-1}^s)
      \Big] + \sum_s \bar w_k^s \log\gamma_k(\mathrm{sg}\, z_k^s),

  with :math:`z_k` reparameterized and :math:`\log q_k` scored with stopped parameters (STL).
* ``nvi-fkl`` (forward KL for the forward density, [1] Eq. 9; reverse KL for the reverse density,
  Eq. 13, as [1] recommends), :math:`z_k` not reparameterized:

  .. math::

      L_k = -\sum_s \bar w_k^s\big[\log q_k + \log\gamma_{k-1}\big] + \sum_s \bar w_{k-1}^s
      \log\gamma_{k-1} - \sum_s \bar w_{k-1}^s\big[\log\gamma_k + \log r_{k-1}\big]
      + \sum_s \bar w_k^s \log\gamma_k.

* ``avo`` (annealed variational objectives [2], [1] Eq. 18): :math:`L_k = -\frac1S\sum_s
  \log v_k^s`, reparameterized, fixed schedule only.

The incoming particles and weights of a level are detached, so the gradients of :math:`L_k`
stay in level :math:`k`; with ``backward=True`` each level calls ``backward`` on its own loss
and frees its graph before the next one, and memory is :math:`O(S)`, not :math:`O(SK)`.

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
2. *Improving Explorability in Variational Inference with Annealed Variational Objectives*,
   C.-W. Huang, S. Tan, A. Lacoste, A. Courville (2018), NeurIPS, arXiv:1809.01294
3. *coix* (the authors' JAX library), ``coix/loss.py``, github.com/jax-ml/coix
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pyro
import torch

from zoo.infer.nested_programs import NestedPrograms
from zoo.infer.resampling import effective_sample_size, log_mean_exp, resample_ancestors
from zoo.poutine.nested_resample_messenger import nested_resample
from zoo.poutine.nested_score_messenger import nested_score

DIVERGENCES = ("nvi-rkl", "nvi-fkl", "avo")


@dataclass
class NestedSweep:
    """What one sweep returns. ``log_weight`` ``(S,)`` is for the last level's particles."""

    loss: torch.Tensor
    log_weight: torch.Tensor
    level_losses: list = field(default_factory=list)  # [()] per level k = 1..K-1
    particles: list = field(default_factory=list)  # [(S, dim)] per level when kept
    log_weights: list = field(default_factory=list)  # [(S,)] per level when kept

    @property
    def log_z(self) -> float:
        """The estimate log Z-hat: the log mean of the final importance weights."""
        return log_mean_exp(self.log_weight).item()

    @property
    def ess(self) -> float:
        """ESS as a fraction of the number of particles."""
        return (effective_sample_size(self.log_weight) / self.log_weight.numel()).item()


def _level_loss(divergence, lv, lgp, lq, lg, lr, lw_prev, lg_sg):
    """The surrogate loss of one level (see the module docstring); every input is ``(S,)``."""
    v = lv.detach()
    w_prev = torch.softmax(lw_prev, 0)  # (S,), incoming weights are already detached
    w = torch.softmax(lw_prev + v, 0)
    if divergence == "avo":
        return -lv.mean()
    if divergence == "nvi-rkl":
        baseline = (w_prev * v).sum()
        loss = -(w_prev * (lv + (1 + v - baseline) * lgp)).sum()
        return loss if lg_sg is None else loss + (w * lg_sg).sum()
    forward = -(w * (lq + lgp)).sum() + (w_prev * lgp).sum()  # nvi-fkl
    return forward - (w_prev * (lg + lr)).sum() + (w * lg).sum()


class NestedObjective:
    r"""A nested-VI objective by name: ``NestedObjective("nvi-rkl", resample=True)``.

    Calling it on :class:`NestedPrograms` runs one sweep with ``num_particles`` particles and
    returns a :class:`NestedSweep` whose ``loss`` is :math:`\sum_k L_k` (detached when
    ``backward=True``, which back-propagates level by level).
    """

    def __init__(self, divergence: str = "nvi-rkl", resample: bool = False,
                 resampler: str = "systematic"):
        if divergence not in DIVERGENCES:
            raise ValueError(f"Unknown objective '{divergence}'. Choose one of: {DIVERGENCES}.")
        self.divergence = divergence
        self.resample = resample
        self.resampler = resampler

    def __repr__(self):
        return f"NestedObjective({self.divergence!r}, resample={self.resample})"

    def __call__(self, programs: NestedPrograms, num_particles: int, backward: bool = False,
                 keep_particles: bool = False) -> NestedSweep:
        if self.divergence == "avo" and programs.learns_targets:
            raise ValueError(
                "AVO maximizes E[log v_k], which is not a divergence once the targets gamma_k "
                "have parameters; use a linear schedule with avo, or nvi-rkl / nvi-fkl for NVI*."
            )
        stl = self.divergence != "nvi-fkl"
        z = programs.initial(num_particles).detach()  # (S, dim)
        log_weight = z.new_zeros(num_particles)  # gamma_0 is sampled exactly: w_0 = 1
        sweep = NestedSweep(loss=z.new_zeros(()), log_weight=log_weight)
        if keep_particles:
            sweep.particles.append(z)
            sweep.log_weights.append(log_weight)
        particles = pyro.plate("particles", num_particles, dim=-1)  # entered once per level
        for k in range(1, programs.num_levels):
            # The schedule is recomputed per level so that each level owns its graph.
            betas = programs.schedule()
            resampler = contextlib.nullcontext()
            if self.resample and k > 1:
                ancestors, log_weight = resample_ancestors(log_weight, self.resampler)
                resampler = nested_resample(indices=ancestors, sites=["z_prev"])
            with particles:
                with resampler, nested_score(stl=stl, reparameterized=stl) as forward:
                    z_prev, z = programs.proposal(k, z, betas)
                with nested_score() as reverse:
                    programs.extended_target(k, z, z_prev, betas)
                lg_sg = None
                if (self.divergence == "nvi-rkl" and programs.learns_targets
                        and torch.is_grad_enabled()):
                    with nested_score() as detached_target:
                        programs.target(k, z.detach(), betas)
                    lg_sg = detached_target.log_prob
            lv = reverse.log_prob - forward.log_prob  # (S,) log incremental weight
            if torch.is_grad_enabled():
                loss = _level_loss(self.divergence, lv, forward.site_log_probs["z_prev"],
                                   forward.site_log_probs["z"], reverse.site_log_probs["z"],
                                   reverse.site_log_probs["z_prev"], log_weight, lg_sg)
                if backward:
                    loss.backward()
                    loss = loss.detach()
                sweep.level_losses.append(loss)
                sweep.loss = sweep.loss + loss
            log_weight = log_weight + lv.detach()
            z = z.detach()
            if keep_particles:
                sweep.particles.append(z)
                sweep.log_weights.append(log_weight)
        sweep.log_weight = log_weight
        return sweep


@torch.no_grad()
def evaluate_nested(programs: NestedPrograms, objective: NestedObjective, num_particles=100,
                    num_batches=100) -> dict:
    """Run the sampler as trained (resampling iff the objective does) ``num_batches`` times.

    Returns the mean and standard error over batches of :math:`\\log\\hat Z` and of the ESS in
    percent of ``num_particles``.
    """
    log_z, ess = [], []
    for _ in range(num_batches):
        sweep = objective(programs, num_particles)
        log_z.append(sweep.log_z)
        ess.append(100 * sweep.ess)
    log_z, ess = torch.tensor(log_z), torch.tensor(ess)

    def sem(x):
        return (x.std() / len(x) ** 0.5).item() if len(x) > 1 else float("nan")

    return {"log_z": log_z.mean().item(), "log_z_sem": sem(log_z),
            "ess_percent": ess.mean().item(), "ess_percent_sem": sem(ess)}
