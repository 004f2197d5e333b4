r"""``TraceGraph_ELBO`` as a differentiable loss, so it trains through the same ``nn.Module``
pattern as every other objective.

Pyro's ``TraceGraph_ELBO`` only offers ``loss_and_grads`` (it calls ``backward`` itself). Its
gradient comes from a *surrogate* loss: the ELBO with score-function terms
:math:`\log q(z)\,\mathrm{stop\_grad}(\text{downstream cost} - b)` for every site that cannot be
reparameterized, plus the baselines' own regression losses [1, 2]. The surrogate's value is not
the ELBO, so we return

.. math::

    \mathcal{L} = \tilde{\mathcal{L}}
        + \mathrm{stop\_grad}\big(-\mathrm{ELBO} - \tilde{\mathcal{L}}\big),

whose value is the negative ELBO (what the engine reports and checks for divergence) and whose
gradient is the surrogate's (what the optimizer needs).

**References:**

1. *Gradient Estimation Using Stochastic Computation Graphs*, J. Schulman, N. Heess, T. Weber,
   P. Abbeel (2015), arXiv:1506.05254
2. *Neural Variational Inference and Learning in Belief Networks*, A. Mnih, K. Gregor (2014),
   arXiv:1402.0030
"""

from __future__ import annotations

import torch
from pyro.infer import TraceGraph_ELBO


class TraceGraphLoss(TraceGraph_ELBO):
    """``TraceGraph_ELBO`` with a ``differentiable_loss``; options as Pyro's."""

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """The negative ELBO as a tensor whose gradient is that of Pyro's score-function surrogate
        (with its baselines)."""
        elbo, surrogate_loss = self._loss_and_surrogate_loss(model, guide, args, kwargs)
        loss = -torch.as_tensor(elbo)
        return surrogate_loss + (loss - surrogate_loss).detach()
