r"""Stochastic natural-gradient steps for conjugate global variational parameters.

For a global latent whose complete conditional is in the exponential family (LDA's topics:
Dirichlet prior, multinomial counts), the natural gradient of the ELBO in the natural
parameters :math:`\lambda` of its mean-field factor is :math:`\hat\lambda - \lambda`, where
:math:`\hat\lambda` is the coordinate-ascent optimum given the local factors. Stochastic
variational inference [1] follows it with minibatch estimates and decreasing steps,

.. math::

    \lambda \leftarrow (1 - \rho_t)\,\lambda + \rho_t\,\hat\lambda, \qquad
    \hat\lambda = \eta + \frac{D}{B} \sum_{d \in \text{batch}} \mathbb{E}_q[t(x_d, z_d)],
    \qquad \rho_t = (t + \tau)^{-\kappa},

which converges for :math:`\kappa \in (0.5, 1]`; with :math:`B = D` and :math:`\rho = 1` it is
the M-step of batch variational Bayes. The :math:`\lambda` belong to the guide (the
``dirichlet`` guide with ``global_step="natural"`` keeps them as buffers, invisible to the
optimizer); :class:`NaturalSteps` is the algorithm that moves them, owned by the training loss
(:class:`~zoo.infer.semi_amortized.SemiAmortizedLoss`), with its own state (the pooled estimates
and the step count, saved in the engine's checkpoints). The same steps are online EM [3] for a
point estimate whose M-step is a count: GraphBTM's topics with ``topic_step="em"``
(:mod:`zoo.models.gbtm`, which owns its instance); that use is why the module lives with the
models, below the losses. It takes one step per backward pass of the loss, from a hook on the
gradient of a zero-valued Pyro factor, so that:

- evaluating a loss without backpropagating it (``ELBO.loss``, held-out figures, Pyro's guess
  of ``max_plate_nesting``) never moves :math:`\lambda`;
- the several guide calls of one backward pass (``num_particles`` without vectorization) take
  one step between them: each saw the same :math:`\lambda`, the first hook to fire applies
  its :math:`\hat\lambda` and the others stand down;
- the minibatch estimates can be pooled over ``batch_documents`` documents before a step
  (:math:`\hat\lambda` of the pooled batch), so that the topics take large-batch steps while
  an encoder trained by the same loop takes many small ones;
- a pooled batch smaller than the largest seen takes a proportionally smaller step.

**References:**

1. *Stochastic Variational Inference*, M. D. Hoffman, D. M. Blei, C. Wang, J. Paisley,
   JMLR 14 (2013)
2. *Online Learning for Latent Dirichlet Allocation*, M. D. Hoffman, D. M. Blei, F. Bach,
   NeurIPS (2010)
3. *On-line Expectation-Maximization Algorithm for Latent Data Models*, O. Cappé, E. Moulines,
   JRSS B 71(3) (2009)
"""

from __future__ import annotations

import pyro
import torch
from torch import nn


class NaturalSteps(nn.Module):
    r""":param dict shapes: name -> the shape of :math:`\lambda` (the guide's global sites)
    :param float offset: :math:`\tau \ge 0`
    :param float decay: :math:`\kappa \in [0, 1]` (:math:`\tau = \kappa = 0`: every step
        replaces :math:`\lambda`, batch variational Bayes when a step sees every document)
    :param int batch_documents: pool the batches' estimates until this many documents are
        seen, then step (1: every batch steps)
    """

    def __init__(self, shapes: dict, offset: float = 1.0, decay: float = 0.7,
                 batch_documents: int = 1):
        super().__init__()
        if offset < 0 or not 0 <= decay <= 1 or batch_documents < 1:
            raise ValueError("natural steps need offset >= 0, 0 <= decay <= 1 and "
                             f"batch_documents >= 1, got {offset}, {decay}, {batch_documents}")
        self.offset, self.decay, self.batch_documents = float(offset), float(decay), int(
            batch_documents)
        self.names = tuple(shapes)
        for name, shape in shapes.items():
            self.register_buffer(f"{name}_pending", torch.zeros(shape))
        long = dict(dtype=torch.long)
        self.register_buffer("steps", torch.zeros((), **long))  # t of the last step taken
        self.register_buffer("largest", torch.zeros((), **long))  # documents of a step, max
        self.register_buffer("pending_documents", torch.zeros((), **long))
        self._generation = 0  # backward passes that applied an estimate (not state)

    def step_size(self, t: int) -> float:
        r""":math:`\rho_t = (t + \tau)^{-\kappa}` before the partial-batch factor."""
        return (t + self.offset) ** -self.decay

    def factor(self, name: str, targets: dict, num_documents: int, anchor_like: torch.Tensor,
               concentration):
        r"""Within a model or guide: a zero-valued Pyro factor ``name`` whose gradient, when
        the loss is backpropagated, adds ``targets`` (name -> :math:`\hat\lambda` of
        ``num_documents`` documents) to the pool and steps once enough are pooled;
        ``concentration(name)`` is the :math:`\lambda` the steps move in place."""
        generation = self._generation
        anchor = anchor_like.new_zeros((), requires_grad=True)
        anchor.register_hook(
            lambda grad: self._pool(targets, num_documents, generation, concentration))
        pyro.factor(name, anchor, has_rsample=True)

    @torch.no_grad()
    def _pool(self, targets: dict, num_documents: int, generation: int, concentration) -> None:
        if generation != self._generation:
            return  # another guide call of this backward pass applied its estimate
        self._generation += 1
        for name, target in targets.items():  # pooled hat-lambda: a documents-weighted mean
            getattr(self, f"{name}_pending").add_(target, alpha=num_documents)
        self.pending_documents += num_documents
        pooled = int(self.pending_documents)
        if pooled < self.batch_documents:
            return
        # A smaller pool (an epoch's remainder) takes a proportionally smaller step: its
        # estimate is as unbiased but noisier (variance ~ 1/B); inverse-variance weights.
        # Unweighted, the 4 documents left over by 6,004 in batches of 200 took a full step
        # scaled by D/B = 1,501 at the end of every epoch (README: 954 -> 932).
        self.largest.clamp_(min=pooled)
        self.steps += 1
        rho = self.step_size(int(self.steps)) * pooled / int(self.largest)
        for name in self.names:
            pending = getattr(self, f"{name}_pending")
            concentration(name).mul_(1 - rho).add_(pending, alpha=rho / pooled)
            pending.zero_()
        self.pending_documents.zero_()
