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

The guide is model-specific (``gcn_normal``): the rows of :math:`A` (as :math:`\log(1 + A)`) are
node features of a two-layer GCN with the renormalized adjacency
:math:`\hat A = D^{-1/2}(A + I)D^{-1/2}`, :math:`D = \operatorname{diag}((A + I)\mathbf{1})`,

.. math::

    H_1 = \mathrm{relu}(\hat A X W_1), \quad H_2 = \mathrm{relu}(\hat A H_1 W_2) + H_1, \quad
    g = \mathrm{relu}(\hat A H_2 w_3) \in \mathbb{R}^V,

and :math:`g` goes through an MLP into AVITM's Gaussian heads. A batch of graphs is one
block-diagonal sparse matrix, so the cost is linear in the non-zeros plus :math:`O(BVd^2)`.

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
from pyro.nn import PyroModule
from torch import nn

from zoo.data.biterms import biterm_matrix, endpoint_counts, stack_sparse
from zoo.models.base import LatentSite, ZooModel, data_plate
from zoo.models.ctm import WordCounts
from zoo.models.nets import GaussianHead, mlp
from zoo.models.priors import dirichlet_laplace_approximation
from zoo.models.prodlda import flat_apply
from zoo.registry import register_guide, register_model


@register_model("gbtm")
class GraphBTM(ZooModel):
    """:param int input_dim: vocabulary size V
    :param int num_topics: K
    :param float alpha: symmetric Dirichlet concentration of the Laplace prior
    :param float dropout: dropout on theta (the paper's 0.6)
    :param float biterm_weight: scale of the biterm log-likelihood (1: the ELBO)
    """

    default_guide = "gcn_normal"
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
            with poutine.scale(scale=self.biterm_weight):
                return pyro.sample("endpoints", WordCounts(logits, total), obs=counts)

    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        """``softmax`` of each column of W, ``[K, V]`` (the topics as GraphBTM prints them)."""
        return torch.softmax(self.decoder.weight.detach().T, -1)

    def example_batch(self, batch_size: int = 4, doc_length: int = 12) -> torch.Tensor:
        """Biterm graphs of ``batch_size`` random documents (uniform words), sparse."""
        v = self.config["input_dim"]
        docs = torch.randint(v, (batch_size, doc_length)).numpy()
        return stack_sparse([biterm_matrix(d, v) for d in docs], v)


class GraphConvolution(nn.Module):
    """``relu?(A_hat (H W) + b)`` with ``A_hat`` a sparse ``[N, N]`` and ``H`` ``[N, d_in]``
    (dense) or sparse."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, adjacency, h):
        hw = torch.sparse.mm(h, self.linear.weight.T) if h.is_sparse else self.linear(h)
        return torch.sparse.mm(adjacency, hw) + self.bias  # [N, d_out]


def graph_batch(x: torch.Tensor):
    r"""Block-diagonal :math:`\hat A` ``[BV, BV]`` and node features :math:`\log(1 + A)`
    ``[BV, V]``, both sparse, from a batch of graphs ``x [B, V, V]``."""
    x = (x if x.is_sparse else x.to_sparse()).coalesce()
    b_count, v = x.shape[0], x.shape[1]
    (b, i, j), a = x.indices(), x.values()
    node_i, node_j = b * v + i, b * v + j  # [nnz]
    n = b_count * v
    degree = torch.ones(n, dtype=a.dtype, device=a.device).index_add_(0, node_i, a)  # (A+I)1
    inv_sqrt = degree.rsqrt()
    loops = torch.arange(n, device=a.device)
    rows = torch.cat([node_i, loops])
    cols = torch.cat([node_j, loops])
    vals = torch.cat([a, torch.ones(n, dtype=a.dtype, device=a.device)])
    adjacency = torch.sparse_coo_tensor(
        torch.stack([rows, cols]), vals * inv_sqrt[rows] * inv_sqrt[cols], (n, n),
        check_invariants=False,
    ).coalesce()
    features = torch.sparse_coo_tensor(torch.stack([node_i, j]), torch.log1p(a), (n, v),
                                       check_invariants=False)
    return adjacency, features.coalesce()


@register_guide("gcn_normal")
class GCNNormalGuide(PyroModule):
    """GraphBTM's encoder: a residual GCN over the biterm graph into a diagonal Gaussian on the
    local site, with AVITM's BatchNorm heads.

    :param model: a model with ``graph_input = True`` (GraphBTM)
    :param int gcn_dim: width of the two GCN layers (the paper: 100)
    :param hidden_dims: MLP widths after the GCN (the paper: 100, 100)
    :param float dropout: dropout on the GCN layers and the last hidden layer (the paper: 0.6)
    :param bool batch_norm: BatchNorm on the loc and scale heads
    """

    def __init__(self, model, gcn_dim: int = 100, hidden_dims=(100, 100), dropout: float = 0.2,
                 batch_norm: bool = True):
        super().__init__()
        reason = type(self).why_not(model)
        if reason is not None:
            raise ValueError(f"GCNNormalGuide does not fit {model.registry_name}: {reason}")
        hidden_dims = tuple(hidden_dims)
        self.options = dict(gcn_dim=gcn_dim, hidden_dims=hidden_dims, dropout=dropout,
                            batch_norm=batch_norm)
        self.sites = tuple(model.latent_sites())
        self.plate_name = model.plate_name
        v = model.input_dim
        self.gcn1 = GraphConvolution(v, gcn_dim)
        self.gcn2 = GraphConvolution(gcn_dim, gcn_dim)
        self.gcn3 = GraphConvolution(gcn_dim, 1)
        self.drop = nn.Dropout(dropout)
        self.trunk = nn.Sequential(mlp([v, *hidden_dims], "relu", final_activation=True),
                                   nn.Dropout(dropout))
        self.heads = nn.ModuleDict({s.name: GaussianHead(hidden_dims[-1], s.event_shape[0],
                                                         batch_norm) for s in self.sites})

    @classmethod
    def why_not(cls, model):
        if not getattr(model, "graph_input", False):
            return "it encodes biterm graphs [batch, V, V]; the model does not declare " \
                   "graph_input = True (GraphBTM does)."
        sites = model.latent_sites()
        if len(sites) != 1 or sites[0].support != "real" or not sites[0].local:
            return "it needs exactly one local real-vector latent site."
        return None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """GCN node scores then MLP: ``[B, V, V]`` graphs -> ``[B, hidden]``."""
        adjacency, features = graph_batch(x)
        h1 = self.drop(torch.relu(self.gcn1(adjacency, features)))  # [BV, d]
        h2 = self.drop(torch.relu(self.gcn2(adjacency, h1))) + h1  # residual, [BV, d]
        g = self.gcn3(adjacency, h2).reshape(x.shape[0], x.shape[1])  # [B, V]
        return self.trunk(g)

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        h = self.hidden(x)
        with data_plate(self.plate_name, x, num_data):
            return {s.name: pyro.sample(s.name, dist.Normal(*self.heads[s.name](h)).to_event(1))
                    for s in self.sites}
