r"""Word counts as a distribution: the multinomial of a bag of words, with :math:`N_d` read from
the value.

.. math::

    \log p(x \mid p) = \log N! - \sum_v \log x_v! + \sum_v x_v \log p_v,
    \qquad N = \sum_v x_v, \quad p = \mathrm{softmax}(\text{logits}),

the density of ``Multinomial(N, logits=...)`` without building the ``[batch, V]`` Binomial and
the support checks that torch's constructor runs on every call (half of a training step at
V = 2,000). ``total_count`` is used only to sample. CTM and GraphBTM observe their words (or
biterm endpoints) through it.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints


class WordCounts(TorchDistribution):
    r"""Multinomial word counts :math:`x \in \mathbb{N}^V` with probabilities
    ``softmax(logits)`` and :math:`N = \sum_v x_v` read from the value.

    >>> counts = torch.tensor([[2.0, 0.0, 1.0]])
    >>> logits = torch.tensor([[0.0, 1.0, 2.0]])
    >>> float(WordCounts(logits).log_prob(counts))  # doctest: +ELLIPSIS
    -4.12...
    >>> float(dist.Multinomial(3, logits=logits).log_prob(counts))  # doctest: +ELLIPSIS
    -4.12...
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, logits: torch.Tensor, total_count: int = 1, validate_args=False):
        self.logits = logits.log_softmax(-1)  # [..., V]
        self.total_count = total_count
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        logits = self.logits.expand(torch.Size(batch_shape) + self.event_shape)
        return WordCounts(logits, self.total_count, validate_args=False)

    def log_prob(self, value):
        return (torch.lgamma(value.sum(-1) + 1) - torch.lgamma(value + 1).sum(-1)
                + (value * self.logits).sum(-1))

    def sample(self, sample_shape=()):
        counts = dist.Multinomial(self.total_count, logits=self.logits)
        return counts.sample(torch.Size(sample_shape))
