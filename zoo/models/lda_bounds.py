r"""LDA's held-out bounds in closed form: the collapsed bound of each document at fixed topics,
and its refinement by the E-step.

With the topics :math:`\beta` fixed (their posterior mean) and each held-out document's
:math:`q(\theta_d) = \mathrm{Dir}(\gamma_d)`, the word assignments summed out as in the model,

.. math::

    b_d(\gamma_d) = \mathbb{E}_{\mathrm{Dir}(\theta_d; \gamma_d)}\Big[\sum_v x_{dv}
        \log(\theta_d^\top\beta)_v\Big] - \mathrm{KL}\big(\mathrm{Dir}(\gamma_d)
        \,\|\,\mathrm{Dir}(\alpha)\big) \;\le\; \log p(w_{d,1:N_d} \mid \beta),

the word-sequence form (no multinomial coefficient), its expectation by Monte Carlo and the KL
exact. :func:`lda_heldout_bounds` starts each :math:`\gamma_d` at an encoder's output (or flat),
improves it by coordinate ascent (:meth:`zoo.models.lda.LDA.local_update`, the E-step of
variational Bayes) and Adam steps on :math:`b_d` in :math:`\log\gamma_d`, and scores it: one
formula for every LDA-type method, the zoo's guides and scikit-learn's topics alike
(``benchmarks/topic_models.py``, and ``zoo evaluate`` for LDA with the ``dirichlet`` guide).
The generic per-document bound, for any topic model and guide, is
:func:`zoo.topics.document_log_weights`.

**References:**

1. *Latent Dirichlet Allocation*, D. M. Blei, A. Y. Ng, M. I. Jordan, JMLR 3 (2003)
2. *Semi-Amortized Variational Autoencoders*, Y. Kim, S. Wiseman, A. C. Miller, D. Sontag,
   A. M. Rush, ICML (2018), arXiv:1802.02550
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Dirichlet, kl_divergence


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
            # in gamma's type: a float64 model's prior would promote it, and topics stay float32
            gamma = local_update(x, gamma, log_topics, coordinate_steps).to(gamma.dtype)
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
    a generator seeded with ``seed``, so two methods scored with the same seed share noise.

    Everything runs in float32 on the topics' device (a GPU when the topics are there): the
    documents, ``alpha`` and the initial concentrations are brought there, and the generator
    lives there (the same seed draws other numbers on a GPU than on the CPU)."""
    topics = topics.detach().to(torch.float32)
    alpha = torch.as_tensor(alpha).to(topics)
    num_docs = counts.shape[0] if torch.is_tensor(counts) else len(counts)
    generator = torch.Generator(topics.device).manual_seed(seed)
    bounds, lengths = [], []
    for start in range(0, num_docs, batch_size):
        index = torch.arange(start, min(start + batch_size, num_docs))
        x = counts[index] if torch.is_tensor(counts) else counts.batch(index)  # [batch, V]
        x = x.to(topics)
        with torch.no_grad():
            gamma = (initial(x).to(topics) if initial is not None
                     else x.new_ones(x.shape[0], topics.shape[0]))  # [batch, K]
        gamma = refine_dirichlet(x, topics, alpha, gamma, local_update, coordinate_steps,
                                 gradient_steps, lr)
        with torch.no_grad():
            bounds.append(dirichlet_document_bounds(x, topics, alpha, gamma, num_particles,
                                                    generator))
        lengths.append(x.sum(-1))
    return (torch.cat(bounds).cpu().numpy().astype(np.float64),
            torch.cat(lengths).cpu().numpy().astype(np.float64))
