r"""Word counts as a distribution: the multinomial of a bag of words, with :math:`N_d` read from
the value.

.. math::

    \log p(x \mid p) = \underbrace{\log N! - \sum_v \log x_v!}_{\text{coefficient}}
        + \sum_v x_v \log p_v,
    \qquad N = \sum_v x_v, \quad p = \mathrm{softmax}(\text{logits}),

the density of ``Multinomial(N, logits=...)`` without building the ``[batch, V]`` Binomial and
the support checks that torch's constructor runs on every call, nor the host read of
:math:`\max_d N_d` that its ``total_count`` needs. ``total_count`` is used only to sample.
ProdLDA, NVDM, LDA, CTM and GraphBTM observe their words (or biterm endpoints) through it.

**The coefficient.** :math:`\log N! - \sum_v \log x_v!` depends on the data alone: it moves no
gradient, but it costs an ``lgamma`` over the dense ``[batch, V]`` counts, 2 ms of a 10 ms
ProdLDA step at V = 2,000 (``benchmarks/topic_throughput.py``). With ``normalized=False`` it is
left out, and the log-density is exact up to that per-document constant: every gradient, and so
training, is the same. The topic models pass ``normalized=not self.training``: **in training
mode the training loss is the negative ELBO less the documents' multinomial coefficient** (the
``train_loss`` of ``metrics.jsonl``, about 385 nats per 20 Newsgroups document above the
negative ELBO); in eval mode, where every held-out figure is computed (held-out ELBO,
perplexity, importance sampling), the density is the full multinomial.

>>> counts = torch.tensor([[2.0, 0.0, 1.0]])
>>> logits = torch.tensor([[0.0, 1.0, 2.0]])
>>> float(WordCounts(logits).log_prob(counts))  # doctest: +ELLIPSIS
-4.12...
>>> float(dist.Multinomial(3, logits=logits).log_prob(counts))  # doctest: +ELLIPSIS
-4.12...
>>> float(WordCounts(logits, normalized=False).log_prob(counts))  # less log(3! / 2!)
-5.22...
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints


def log_multinomial_coefficient(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\log N_d! - \sum_v \log x_{dv}!` of counts ``[..., V]`` -> ``[...]``."""
    return torch.lgamma(x.sum(-1) + 1) - torch.lgamma(x + 1).sum(-1)


class WordCounts(TorchDistribution):
    r"""Multinomial word counts :math:`x \in \mathbb{N}^V` with probabilities
    ``softmax(logits)`` and :math:`N = \sum_v x_v` read from the value.

    :param logits: ``[..., V]`` unnormalized log-probabilities
    :param int total_count: words per sample drawn by :meth:`sample` (not used to score)
    :param bool normalized: include the multinomial coefficient in :meth:`log_prob` (see the
        module docstring: leaving it out changes no gradient)
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.independent(constraints.nonnegative_integer, 1)

    def __init__(self, logits: torch.Tensor, total_count: int = 1, normalized: bool = True,
                 validate_args=False):
        self.logits = logits.log_softmax(-1)  # [..., V]
        self.total_count = total_count
        self.normalized = normalized
        super().__init__(logits.shape[:-1], logits.shape[-1:], validate_args=validate_args)

    @classmethod
    def from_log_probs(cls, log_probs: torch.Tensor, total_count: int = 1,
                       normalized: bool = True):
        """The same distribution from log-probabilities ``[..., V]`` already normalized (a
        ``log_softmax``): spares the ``log_softmax`` of the constructor."""
        self = cls.__new__(cls)
        self.logits, self.total_count, self.normalized = log_probs, total_count, normalized
        TorchDistribution.__init__(self, log_probs.shape[:-1], log_probs.shape[-1:],
                                   validate_args=False)
        return self

    @classmethod
    def from_probs(cls, probs: torch.Tensor, total_count: int = 1, normalized: bool = True):
        r"""The same distribution from probabilities ``[..., V]`` that sum to 1 (LDA's
        :math:`\theta^\top\beta`), floored at the smallest normal float so that an unused
        word's :math:`0 \cdot \log 0` stays 0."""
        log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
        return cls.from_log_probs(log_probs, total_count, normalized)

    @property
    def probs(self) -> torch.Tensor:
        """The word probabilities, ``exp(logits)``."""
        return self.logits.exp()

    def expand(self, batch_shape, _instance=None):
        logits = self.logits.expand(torch.Size(batch_shape) + self.event_shape)
        return WordCounts.from_log_probs(logits, self.total_count, self.normalized)

    def log_prob(self, value):
        log_p = (value * self.logits).sum(-1)  # [...]
        return log_p + log_multinomial_coefficient(value) if self.normalized else log_p

    def sample(self, sample_shape=()):
        counts = dist.Multinomial(self.total_count, logits=self.logits)
        return counts.sample(torch.Size(sample_shape))


@torch.no_grad()
def seed_topics(counts: torch.Tensor, num_topics: int, generator: torch.Generator | None = None,
                smoothing: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``num_topics`` documents of ``counts [N, V]`` chosen by k-means++ (Arthur &
    Vassilvitskii, SODA 2007) on the Hellinger distance of their word frequencies, as topics:
    ``(topics [K, V], index [K])`` with :math:`\beta_k \propto f_{d_k} + s/V`. Topics started
    near-uniform learn the same average of the corpus from a poor first encoder (they merge);
    spread-out documents give them distinct starts (CTM's mixture decoder, the
    ``logistic_normal`` guide's topics). With fewer documents than topics some repeat."""
    freq = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)  # [N, V]
    root = freq.sqrt()
    n = root.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator, device=counts.device))]
    d2 = ((root - root[chosen[0]]) ** 2).sum(-1)  # [N]
    for _ in range(1, num_topics):
        weights = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        chosen.append(int(torch.multinomial(weights, 1, generator=generator)))
        d2 = torch.minimum(d2, ((root - root[chosen[-1]]) ** 2).sum(-1))
    index = torch.tensor(chosen, device=counts.device)
    seeds = freq[index] + smoothing / freq.shape[-1]  # [K, V]
    return seeds / seeds.sum(-1, keepdim=True), index
