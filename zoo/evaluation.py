r"""Held-out evaluation shared by the engine, the CLI and the benchmarks.

The held-out ELBO per data point,

.. math::

    \frac{1}{N_\text{test}} \sum_{n} \mathbb{E}_{q(z \mid x_n)}
        \big[\log p(x_n, z) - \log q(z \mid x_n)\big] \;\le\; \frac{1}{N_\text{test}}
        \sum_n \log p(x_n),

is estimated with ``Trace_ELBO`` (the plain Monte Carlo form, whichever objective trained the
guide, so that numbers are comparable across objectives), in batches, without gradients, with
model and guide in ``eval()`` mode (dropout off, BatchNorm on its running statistics).
"""

from __future__ import annotations

import numpy as np
import torch
from pyro.infer import Trace_ELBO
from torch.distributions import Dirichlet, kl_divergence


def batched(split, batch_size: int):
    """Yield consecutive dense batches of a :class:`~zoo.data.dataset.Split`, in order."""
    n = len(split)
    for start in range(0, n, batch_size):
        yield split.batch(torch.arange(start, min(start + batch_size, n)))


@torch.no_grad()
def heldout_elbo(model, guide, split, batch_size: int = 1000, num_particles: int = 1,
                 device=None) -> float:
    """Mean ELBO per data point of ``split`` (nats; higher is better)."""
    was_training = model.training, guide.training
    model.eval()
    guide.eval()
    elbo = Trace_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=model.max_plate_nesting,
    )
    total = 0.0
    for x in batched(split, batch_size):
        if device is not None:
            x = x.to(device)
        total += elbo.loss(model, guide, x)  # -sum_n ELBO_n over the batch (scale 1)
    model.train(was_training[0])
    guide.train(was_training[1])
    return -total / len(split)


def dirichlet_document_bounds(x: torch.Tensor, topics: torch.Tensor, alpha: torch.Tensor,
                              concentration: torch.Tensor, num_particles: int = 16,
                              generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Per-document bounds :math:`b_d(\gamma_d)` ``[batch]`` (nats, word-sequence form: no
    multinomial coefficient) for counts ``x`` ``[batch, V]``, topics ``[K, V]`` (rows on the
    simplex), prior ``alpha`` ``[K]`` and ``concentration`` :math:`\gamma` ``[batch, K]``.
    Differentiable in ``concentration`` (implicit reparameterization). With a ``generator``
    the draws are reproducible and the global RNG is untouched."""
    shape = (num_particles, *concentration.shape)
    if generator is None:
        theta = Dirichlet(concentration).rsample((num_particles,))  # [S, batch, K]
    else:  # Dirichlet = normalized Gammas; torch's _standard_gamma is differentiable
        gammas = torch._standard_gamma(concentration.expand(shape).contiguous(), generator)
        theta = gammas / gammas.sum(-1, keepdim=True)
    tiny = torch.finfo(theta.dtype).tiny
    words = (x * (theta.clamp_min(tiny) @ topics).clamp_min(tiny).log()).sum(-1)  # [S, batch]
    kl = kl_divergence(Dirichlet(concentration), Dirichlet(alpha))  # [batch]
    return words.mean(0) - kl


def refine_dirichlet(x: torch.Tensor, topics: torch.Tensor, alpha: torch.Tensor,
                     concentration: torch.Tensor, local_update=None, coordinate_steps: int = 0,
                     gradient_steps: int = 50, lr: float = 0.1, num_particles: int = 4,
                     min_concentration: float = 1e-3) -> torch.Tensor:
    r"""Refined :math:`\gamma` ``[batch, K]`` for the documents ``x`` at fixed ``topics``:
    ``coordinate_steps`` calls of ``local_update(x, gamma, {"topic_words": log topics}, 1)``
    (e.g. :meth:`zoo.models.lda.LDA.local_update`, the E-step at point-mass topics), then
    ``gradient_steps`` Adam steps on :math:`\sum_d b_d` in :math:`\log\gamma` (Adam's
    per-coordinate steps make them per-document steps). Concentrations are kept above
    ``min_concentration``, where Dirichlet sampling is reliable."""
    gamma = concentration.detach().clamp_min(min_concentration)
    if coordinate_steps:
        with torch.no_grad():
            log_topics = {"topic_words": topics.clamp_min(torch.finfo(topics.dtype).tiny).log()}
            gamma = local_update(x, gamma, log_topics, coordinate_steps)
            gamma = gamma.clamp_min(min_concentration)
    if not gradient_steps:
        return gamma
    log_gamma = gamma.log().requires_grad_()
    optimizer = torch.optim.Adam([log_gamma], lr=lr)
    floor = float(np.log(min_concentration))
    for _ in range(gradient_steps):
        bounds = dirichlet_document_bounds(x, topics, alpha, log_gamma.clamp_min(floor).exp(),
                                           num_particles)
        (grad,) = torch.autograd.grad(-bounds.sum(), [log_gamma])
        log_gamma.grad = grad
        optimizer.step()
    return log_gamma.detach().clamp_min(floor).exp()


def lda_heldout_bounds(counts, topics: torch.Tensor, alpha: torch.Tensor, initial=None,
                       local_update=None, coordinate_steps: int = 0, gradient_steps: int = 0,
                       lr: float = 0.1, batch_size: int = 500, num_particles: int = 32,
                       seed: int = 0):
    r"""``(bounds [D], lengths [D])`` as NumPy arrays: :func:`dirichlet_document_bounds` of
    every document of ``counts`` (a dense ``[D, V]`` tensor, or a split with ``batch``) at
    ``topics``, each document's :math:`\gamma_d` from ``initial(x)`` (default: flat, all ones)
    refined by :func:`refine_dirichlet`. The final estimate uses ``num_particles`` draws from
    a generator seeded with ``seed``, so two methods scored with the same seed share noise."""
    topics = topics.detach().to(torch.float32)
    num_docs = counts.shape[0] if torch.is_tensor(counts) else len(counts)
    generator = torch.Generator().manual_seed(seed)
    bounds, lengths = [], []
    for start in range(0, num_docs, batch_size):
        index = torch.arange(start, min(start + batch_size, num_docs))
        x = counts[index] if torch.is_tensor(counts) else counts.batch(index)  # [batch, V]
        with torch.no_grad():
            gamma = (initial(x) if initial is not None
                     else x.new_ones(x.shape[0], topics.shape[0]))  # [batch, K]
        gamma = refine_dirichlet(x, topics, alpha, gamma, local_update, coordinate_steps,
                                 gradient_steps, lr)
        with torch.no_grad():
            bounds.append(dirichlet_document_bounds(x, topics, alpha, gamma, num_particles,
                                                    generator))
        lengths.append(x.sum(-1))
    return (torch.cat(bounds).numpy().astype(np.float64),
            torch.cat(lengths).numpy().astype(np.float64))
