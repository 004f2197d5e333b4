r"""GraphBTM: a biterm topic model whose data point is the biterm graph of a mini-corpus.

Short texts have too few words for document-level co-occurrence; BTM [2] models the corpus's
biterms instead, and GraphBTM [1] encodes the biterm graph of a few documents at a time with a
graph convolutional network [3]. For a mini-corpus with biterm counts :math:`A`
(:mod:`zoo.data.biterms`):

.. math::

    h &\sim \mathcal{N}\big(\mu_0, \operatorname{diag}\Sigma_0\big), \qquad
        \theta = \mathrm{softmax}(h), \qquad
        p = \mathrm{softmax}\big(\mathrm{BN}(W\theta)\big) \in \Delta^{V-1}, \\
    \log p(A \mid h) &= \sum_{\text{biterms } \{i,j\}} \big[\log p_i + \log p_j\big]
        = \sum_i c_i \log p_i, \qquad c = A\mathbf{1} + \operatorname{diag}A,

observed as ``Multinomial(c; p)`` on the endpoint counts :math:`c` (site ``"endpoints"``), with
the Laplace prior of :math:`\mathrm{Dir}(1)` (:func:`~zoo.models.priors.
dirichlet_laplace_approximation`), :math:`W \in \mathbb{R}^{V \times K}` without bias and
BatchNorm without affine parameters, dropout on :math:`\theta` (0.6 in [1]). The paper writes the
likelihood as :math:`\sum_{ij} A_{ij}[\log p_i + \log p_j]` over the full symmetric matrix, which
counts every :math:`i \ne j` biterm twice; here each biterm counts once. Its code also scales the
reconstruction by :math:`10^{-4}`; ``biterm_weight`` tempers the likelihood the same way (1 by
default: the plain ELBO).

The guide is the graph encoder ``gcn_normal`` (:mod:`guides.gcn_normal`), which fits every model
that declares ``graph_input``.

**References:**

1. *GraphBTM: Graph Enhanced Autoencoded Variational Inference for Biterm Topic Model*,
   Q. Zhu, Z. Feng, X. Li, EMNLP 2018 (code: github.com/valdersoul/GraphBTM)
2. *A Biterm Topic Model for Short Texts*, X. Yan, J. Guo, Y. Lan, X. Cheng, WWW 2013
3. *Semi-Supervised Classification with Graph Convolutional Networks*, T. N. Kipf, M. Welling,
   ICLR 2017
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from zoo.data.biterms import biterm_matrix, endpoint_counts, stack_sparse
from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel, data_plate
from zoo.models.nets import flat_apply
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.models.word_counts import WordCounts
from zoo.registry import register_model


@register_model("gbtm")
class GraphBTM(ZooModel):
    """:param int input_dim: vocabulary size V
    :param int num_topics: K
    :param float alpha: symmetric Dirichlet concentration of the Laplace prior
    :param float dropout: dropout on theta (the paper's 0.6)
    :param float biterm_weight: scale of the biterm log-likelihood (1: the ELBO)
    """

    default_guide = "gcn_normal"
    topic_model = True
    plate_name = "mini_corpora"
    #: data points are biterm graphs ``[B, V, V]`` (sparse), not flat vectors
    graph_input = True

    @classmethod
    def prepare_data(cls, dataset):
        """Documents with token order -> mini-corpora of biterm graphs (window 30, 3 documents
        per mini-corpus, as the paper); refuses a bag of words with a message."""
        from zoo.data.biterms import biterm_dataset

        return dataset if dataset.kind == "graph" else biterm_dataset(dataset)

    def __init__(self, input_dim: int = 2000, num_topics: int = 50, alpha: float = 1.0,
                 dropout: float = 0.6, biterm_weight: float = 1.0):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("num_topics", num_topics)
        checks.positive("alpha", alpha)
        checks.probability("dropout", dropout)
        self.config = dict(input_dim=input_dim, num_topics=num_topics, alpha=alpha,
                           dropout=dropout, biterm_weight=biterm_weight)
        self.num_topics = num_topics
        self.biterm_weight = biterm_weight
        loc, scale = dirichlet_laplace_approximation(torch.full((num_topics,), float(alpha)))
        self.register_buffer("prior_loc", loc)
        self.register_buffer("prior_scale", scale)
        self.decoder = nn.Linear(num_topics, input_dim, bias=False)  # W: [V, K]
        nn.init.xavier_normal_(self.decoder.weight)
        self.decoder_norm = nn.BatchNorm1d(input_dim, affine=False)
        self.theta_dropout = nn.Dropout(dropout)

    def latent_sites(self):
        return (LatentSite("doc_logits", "real", (self.num_topics,)),)

    def word_logits(self, doc_logits: torch.Tensor) -> torch.Tensor:
        """``[..., K]`` -> ``[..., V]`` logits of p(w | theta)."""
        theta = self.theta_dropout(torch.softmax(doc_logits, -1))  # [..., K]
        return flat_apply(lambda t: self.decoder_norm(self.decoder(t)), theta)  # [..., V]

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None,
                batch_size: int = 1, num_biterms: int = 50):
        """Score biterm graphs ``x [B, V, V]`` (sparse or dense); with ``x=None`` draw the
        endpoint counts of ``num_biterms`` biterms per mini-corpus from the prior."""
        if x is None:
            x_template = self.prior_loc.new_zeros(batch_size, 1)
            counts, total = None, 2 * num_biterms
        else:
            x_template, counts, total = x, endpoint_counts(x), 1  # counts: [B, V]
        with data_plate(self.plate_name, x_template, num_data):
            h = pyro.sample("doc_logits",
                            dist.Normal(self.prior_loc, self.prior_scale).to_event(1))
            logits = self.word_logits(h)  # [..., B, V]
            with poutine.scale(scale=self.biterm_weight):  # coefficient: in eval mode only
                return pyro.sample("endpoints", WordCounts(logits, total,
                                                           normalized=not self.training),
                                   obs=counts)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        """``softmax`` of each column of W, ``[K, V]`` (the topics as GraphBTM prints them)."""
        return torch.softmax(self.decoder.weight.detach().T, -1)

    def example_batch(self, batch_size: int = 4, doc_length: int = 12) -> torch.Tensor:
        """Biterm graphs of ``batch_size`` random documents (uniform words), sparse."""
        v = self.config["input_dim"]
        docs = torch.randint(v, (batch_size, doc_length)).numpy()
        return stack_sparse([biterm_matrix(d, v) for d in docs], v)
