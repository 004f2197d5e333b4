r"""GraphBTM's encoder: a graph convolutional network over a mini-corpus's biterm graph into a
diagonal Gaussian, for models whose data points are graphs (``graph_input``: GraphBTM).

The rows of the biterm counts :math:`A` (as :math:`\log(1 + A)`) are node features of a
two-layer GCN [2] with the renormalized adjacency :math:`\hat A = D^{-1/2}(A + I)D^{-1/2}`,
:math:`D = \operatorname{diag}((A + I)\mathbf{1})`,

.. math::

    H_1 = \mathrm{relu}(\hat A X W_1), \quad H_2 = \mathrm{relu}(\hat A H_1 W_2) + H_1, \quad
    g = \hat A H_2 w_3 \in \mathbb{R}^V,

and :math:`g` goes through an MLP into AVITM's Gaussian heads [1]. A batch of graphs is one
block-diagonal sparse matrix over the nodes that have an edge, so the cost is linear in the
non-zeros plus :math:`O(n d^2)` for the :math:`n` words present in the batch's mini-corpora.

**References:**

1. *GraphBTM: Graph Enhanced Autoencoded Variational Inference for Biterm Topic Model*,
   Q. Zhu, Z. Feng, X. Li, EMNLP 2018 (code: github.com/valdersoul/GraphBTM)
2. *Semi-Supervised Classification with Graph Convolutional Networks*, T. N. Kipf, M. Welling,
   ICLR 2017
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from guides.base import ZooGuide
from zoo.models import checks
from zoo.models.base import data_plate
from zoo.models.nets import GaussianHead, mlp
from zoo.registry import register_guide


class GraphConvolution(nn.Module):
    """``relu?(A_hat (H W) + b)`` with ``A_hat`` a sparse ``[N, N]`` and ``H`` ``[N, d_in]``
    (dense) or sparse."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=False)
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, adjacency, h):
        """One graph convolution: ``adjacency @ (h W^T) + b`` (``h`` may be sparse), shape ``[N,
        d_out]``."""
        hw = torch.sparse.mm(h, self.linear.weight.T) if h.is_sparse else self.linear(h)
        return torch.sparse.mm(adjacency, hw) + self.bias  # [N, d_out]


def graph_batch(x: torch.Tensor):
    r"""The nodes of a batch of graphs ``x [B, V, V]`` that have an edge, numbered ``0..n-1``:
    their block-diagonal :math:`\hat A` ``[n, n]`` and node features :math:`\log(1 + A)` ``[n,
    V]``, both sparse, and ``active [n]``, each node's index ``b V + i`` among all ``B V``."""
    x = (x if x.is_sparse else x.to_sparse()).coalesce()
    v = x.shape[1]
    (b, i, j), a = x.indices(), x.values()
    # a mini-corpus holds a few dozen of the V words: number only the nodes that have an edge
    active, inverse = torch.unique(torch.cat([b * v + i, b * v + j]), return_inverse=True)
    node_i, node_j = inverse[: len(a)], inverse[len(a):]  # [nnz] each, in 0..n-1
    n = len(active)
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
    return adjacency, features.coalesce(), active


@register_guide("gcn_normal")
class GCNNormalGuide(ZooGuide):
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
        checks.count("gcn_dim", gcn_dim)
        hidden_dims = checks.sizes("hidden_dims", hidden_dims)
        checks.probability("dropout", dropout)
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
        if not model.graph_input:
            return "it encodes biterm graphs [batch, V, V]; the model does not declare " \
                   "graph_input = True (GraphBTM does)."
        sites = model.latent_sites()
        if len(sites) != 1 or sites[0].support != "real" or not sites[0].local:
            return "it needs exactly one local real-vector latent site."
        return None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        r"""GCN node scores then MLP: ``[B, V, V]`` graphs -> ``[B, hidden]``.

        The layers run on the nodes that have an edge only (a few dozen of the ``V`` per
        mini-corpus; on all ``B V`` nodes an epoch of the fortunes benchmark took a minute). A
        word absent from a mini-corpus has zero features and only its self-loop, so the three
        layers give its node the same score from the biases alone,
        :math:`c_1 = \mathrm{relu}(b_1)`, :math:`c_2 = \mathrm{relu}(W_2 c_1 + b_2) + c_1`,
        :math:`g = w_3^\top c_2 + b_3`, computed once; dropout acts on the present words'
        nodes."""
        adjacency, features, active = graph_batch(x)
        h1 = self.drop(torch.relu(self.gcn1(adjacency, features)))  # [n, d]
        h2 = self.drop(torch.relu(self.gcn2(adjacency, h1))) + h1  # residual, [n, d]
        scores = self.gcn3(adjacency, h2).squeeze(-1)  # [n]
        c1 = torch.relu(self.gcn1.bias)
        c2 = torch.relu(self.gcn2.linear(c1) + self.gcn2.bias) + c1
        absent = self.gcn3.linear(c2) + self.gcn3.bias  # [1]
        g = absent.expand(x.shape[0] * x.shape[1]).index_put((active,), scores)  # [BV]
        return self.trunk(g.reshape(x.shape[0], x.shape[1]))  # [B, hidden]

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: the GCN encoder over the batch's biterm graph, then a diagonal
        Gaussian for every local site, in the data plate."""
        h = self.hidden(x)
        with data_plate(self.plate_name, x, num_data):
            return {s.name: pyro.sample(s.name, dist.Normal(*self.heads[s.name](h)).to_event(1))
                    for s in self.sites}
