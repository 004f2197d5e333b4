r"""The amortization gap: what an encoder leaves on the table, found by refining each data
point's posterior with the model fixed.

An amortized guide computes :math:`q_\phi(z \mid x)` in one forward pass. Cremer et al. [1]
split the inference gap of a trained model into two parts,

.. math::

    \underbrace{\log p(x) - \mathrm{ELBO}(q_\phi)}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathrm{ELBO}(q^*)}_{\text{approximation gap}}
    + \underbrace{\mathrm{ELBO}(q^*) - \mathrm{ELBO}(q_\phi)}_{\text{amortization gap}},
    \qquad q^* = \arg\max_{q \in \mathcal{Q}} \mathrm{ELBO}_x(q),

where :math:`\mathcal{Q}` is the guide's family. :math:`q^*` is estimated per data point by
stochastic gradient ascent on that point's own ELBO, started at the encoder's output
(semi-amortized refinement [2]): the guide's *local parameters* for a batch
(:meth:`~guides.base.ZooGuide.local_parameters`, which :attr:`~guides.base.ZooGuide.refinable`
guides expose) become free tensors, one row per point, and Adam steps them while the model and
the encoder stay as trained. Points are independent given the model, so one optimizer on the
batch's summed ELBO optimizes each point's own.

What the local parameters are is the guide's choice: the simplex guides' raw Dirichlet or
logistic-normal parameters per document; for the Gaussian family (diagonal, chain, low-rank,
Householder, centralized flow) the encoder's last hidden layer :math:`h(x)`, from which every
per-point quantity (low-rank factors, reflection vectors) is computed, together with a shift of
each head's location and log-scale, so that every diagonal Gaussian is reachable whatever the
heads' rank (a freshly built scale head ignores :math:`h`: its weights start at zero). One
refinement serves every member of the family; the refined ELBO is the ELBO of a member of the
family, so the estimated gap is a lower bound of the paper's, tight as the optimizer converges.

**References:**

1. *Inference Suboptimality in Variational Autoencoders*, C. Cremer, X. Li, D. Duvenaud,
   ICML (2018), arXiv:1801.03558
2. *Semi-Amortized Variational Autoencoders*, Y. Kim, S. Wiseman, A. C. Miller, D. Sontag,
   A. M. Rush, ICML (2018), arXiv:1802.02550
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from zoo.infer.importance import particle_log_weights, point_batches, point_log_weights
from zoo.models.base import evaluating, like_module


def refine(raw: dict, bound: Callable[[dict], torch.Tensor], steps: int, lr: float) -> dict:
    """``steps`` Adam steps of rate ``lr`` on the raw local parameters ``raw`` (``{name:
    [batch, ...]}``, detached copies are stepped) maximizing ``bound(raw).sum()``, a per-point
    bound ``[batch]``; only the copies get gradients (the model's and the encoder's weights are
    not touched). Returns the refined parameters, detached."""
    raw = {k: v.detach().clone() for k, v in raw.items()}
    leaves = [v.requires_grad_() for v in raw.values()]
    optimizer = torch.optim.Adam(leaves, lr=lr)
    for _ in range(steps):
        grads = torch.autograd.grad(-bound(raw).sum(), leaves)
        for leaf, grad in zip(leaves, grads):
            leaf.grad = grad
        optimizer.step()
    return {k: v.detach() for k, v in raw.items()}


def point_elbos(model, guide, x: torch.Tensor, num_particles: int = 8,
                local_parameters: dict | None = None) -> torch.Tensor:
    r"""``[batch]``: each data point's ELBO, :math:`\frac1S \sum_s \log p(x, z_s) - \log
    q(z_s \mid x)` over ``num_particles`` vectorized guide draws, with the guide at
    ``local_parameters`` where given (its encoder's output otherwise). Differentiable (the
    Gaussian family is reparameterized); for models whose latents are all local."""
    override = (guide.using_local_parameters(local_parameters) if local_parameters is not None
                else contextlib.nullcontext())
    with override:
        weights, _ = particle_log_weights(model, guide, (x,), {}, num_particles,
                                          model.max_plate_nesting, model.plate_name)
    if weights.has_global:
        check_refinable(model, guide)  # raises, naming the global latent
    return point_log_weights(weights).mean(0)


def check_refinable(model, guide) -> None:
    """Refuse, with the reason, a pair whose posteriors cannot be refined per data point."""
    if not guide.refinable:
        raise ValueError(f"guide '{guide.registry_name}' does not expose its local parameters, "
                         "so its posteriors cannot be refined per data point.")
    glob = [s.name for s in model.latent_sites() if not s.local]
    if glob:
        raise ValueError(f"model '{model.registry_name}' has a global latent ({glob[0]!r}): its "
                         "ELBO does not split into one per data point, so there is no per-point "
                         "refinement.")


def amortization_gap(model, guide, data, steps: int = 100, lr: float = 1e-2,
                     num_particles: int = 8, eval_particles: int = 100, batch_size: int = 50,
                     log_likelihood: float | None = None) -> dict:
    r"""Refine every point of ``data`` (a :class:`~zoo.data.dataset.Split` or a tensor of
    points) for ``steps`` Adam steps of rate ``lr`` on its ELBO (``num_particles`` draws per
    step) and score both guides with ``eval_particles`` draws per point, in eval mode. Returns
    nats per data point: ``amortized_elbo`` and ``refined_elbo`` (means), ``amortization_gap``
    (their mean difference) with its standard error over points, the per-point differences
    (``pointwise_amortization_gap``), ``refine_steps``, and, given ``log_likelihood`` (the mean
    importance-sampled :math:`\log p(x)` of the same points), the ``approximation_gap``
    :math:`\log p(x) - \mathrm{ELBO}(q^*)`."""
    check_refinable(model, guide)
    amortized, refined = [], []
    with evaluating(model, guide, no_grad=False):  # refinement takes gradients
        for x in point_batches(data, batch_size):
            x = like_module(x, model)
            with torch.no_grad():
                start = guide.local_parameters(x)
                amortized.append(point_elbos(model, guide, x, eval_particles))
            raw = refine(start, lambda r, x=x: point_elbos(model, guide, x, num_particles, r),
                         steps, lr)
            with torch.no_grad():
                refined.append(point_elbos(model, guide, x, eval_particles, raw))
    amortized = torch.cat(amortized).double().cpu()
    refined = torch.cat(refined).double().cpu()
    gap = refined - amortized
    n = len(gap)
    out = {"amortized_elbo": amortized.mean().item(), "refined_elbo": refined.mean().item(),
           "amortization_gap": gap.mean().item(),
           "amortization_gap_stderr": gap.std().item() / math.sqrt(n) if n > 1 else math.nan,
           "pointwise_amortization_gap": gap.tolist(), "refine_steps": steps}
    if log_likelihood is not None:
        out["approximation_gap"] = log_likelihood - out["refined_elbo"]
    return out

