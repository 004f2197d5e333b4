r"""Centralized transformation flow (NVCTM): an encoder's Gaussian rotated by reflections that
are built from its own mean, written as a full-covariance ``MultivariateNormal``.

.. math::

    q_\phi(z \mid x) = \mathcal{N}\big(U\mu,\; U \operatorname{diag}(\sigma^2)\, U^\top\big),
    \qquad U = H_1 H_2 \cdots H_T, \quad H_t = I - 2\,\frac{v_t v_t^\top}{\lVert v_t\rVert^2},

with :math:`\mu, \sigma` the encoder's outputs. *Centralized* [1]: the first reflection vector
is the mean itself, :math:`v_1 = \mu`, where the Householder flow [2] takes it from the last
hidden layer. The next vectors follow :math:`v_{t+1} = H_t W_t v_t`, with :math:`W_t` learned
``K x K`` maps initialized at the identity.

*Why* :math:`W_t`: the literal rule :math:`v_{t+1} = H_t v_t` of the NVCTM description is
degenerate, because :math:`H(v)\,v = -v`: every reflection equals :math:`H(\mu)` and
:math:`U \in \{I, H(\mu)\}`. The TensorFlow re-implementation (CR-GSM-NVCTM) computes exactly
:math:`U = H(\hat\mu)^{T+1}`; a PyTorch one prepends one reflection from the hidden layer,
:math:`U = H_0 H(\mu)^T`, its only freedom. :math:`W_t` restores a rich family and reduces to the
literal rule at :math:`W_t = I`.

**KL.** :math:`U` is orthogonal, so the sample :math:`z = U(\mu + \sigma\odot\epsilon)` has the
covariance above, and the KL to a Gaussian prior :math:`\mathcal{N}(\mu_0, \Sigma_0)` is
analytic (torch's registered ``MultivariateNormal`` pair):

.. math::

    \mathrm{KL} = \tfrac12\Big[\operatorname{tr}(\Sigma_0^{-1} U\Sigma U^\top)
        + (U\mu - \mu_0)^\top \Sigma_0^{-1} (U\mu - \mu_0) - K + \log|\Sigma_0|
        - \textstyle\sum_k \log\sigma_k^2\Big].

Under an isotropic prior (:math:`\mu_0 = 0`, :math:`\Sigma_0 = s^2 I`, e.g. the symmetric Laplace
prior) it equals the diagonal guide's KL: the rotation then acts only through the decoder. Under
CTM's learned full covariance it does not. This module also registers the analytic KLs of a
diagonal ``Normal`` and of a :class:`~guides.householder.HouseholderNormal` against a
``MultivariateNormal`` prior (and of a ``MultivariateNormal`` against a diagonal ``Normal``), so
``--elbo meanfield`` is analytic for all three CTM guides.

**Warm-up.** On a model that holds its prior fixed for a while (CTM's ``prior_warmup``) the guide
uses :math:`U = I` until the prior is learned: against the fixed isotropic prior the rotation
cannot lower the KL and only scrambles the encoder's batch-normalized coordinates (see
:meth:`CentralizedFlowGuide.site_dist`). The guide declares the annealed quantity
``prior_learning``, which the engine's schedule sets on model and guide alike
(:mod:`zoo.schedules`); it starts at the model's value.

**References:**

1. *Neural Variational Correlated Topic Modeling*, L. Liu, H. Huang, Y. Gao, Y. Zhang, X. Wei,
   WWW 2019, doi:10.1145/3308558.3313561
2. *Improving Variational Auto-Encoders using Householder Flow*, J. M. Tomczak, M. Welling (2016),
   arXiv:1611.09630
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.distributions as tdist
from torch import nn
from torch.distributions import register_kl
from torch.distributions.multivariate_normal import _batch_mahalanobis

from guides.diagonal_normal import DiagonalNormalGuide
from guides.householder import HouseholderNormal
from zoo.registry import register_guide


def householder_product(vectors: torch.Tensor) -> torch.Tensor:
    r"""``U = H(v_1) H(v_2) ... H(v_T)`` for ``vectors [..., T, D]``; returns ``[..., D, D]``."""
    d = vectors.shape[-1]
    u = torch.eye(d, dtype=vectors.dtype, device=vectors.device).expand(
        vectors.shape[:-2] + (d, d)
    )
    for t in range(vectors.shape[-2]):
        v = vectors[..., t, :]  # [..., D]
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        # U H(v) = U - 2 (U v) v^T
        u = u - 2.0 * (u @ v.unsqueeze(-1)) * v.unsqueeze(-2)
    return u


def rotated_normal(loc: torch.Tensor, scale: torch.Tensor, u: torch.Tensor):
    r"""``N(U loc, U diag(scale^2) U^T)`` as a ``MultivariateNormal`` (``loc, scale [..., D]``,
    ``u [..., D, D]`` orthogonal). The Cholesky factor comes from a QR decomposition of
    :math:`(U\operatorname{diag}\sigma)^\top`, which avoids forming the covariance."""
    m = u * scale.unsqueeze(-2)  # U diag(sigma), [..., D, D]
    r = torch.linalg.qr(m.transpose(-1, -2)).R  # M^T = Q R  =>  M M^T = R^T R
    sign = torch.sign(r.diagonal(dim1=-2, dim2=-1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    scale_tril = (r * sign.unsqueeze(-1)).transpose(-1, -2)  # lower, positive diagonal
    new_loc = (u @ loc.unsqueeze(-1)).squeeze(-1)
    return dist.MultivariateNormal(new_loc, scale_tril=scale_tril)


def mvn_kl(p, q) -> torch.Tensor:
    r""":math:`\mathrm{KL}(p \,\|\, q)` of two ``MultivariateNormal`` s: torch's closed form,
    the same operations in the same order, with the batch shapes read as integers (torch reads
    them with ``torch._C._infer_size``, which refuses the tensor-valued shapes of a
    ``torch.jit.trace``, so the traced loss of :mod:`zoo.infer.traced` can use it)."""
    if p.event_shape != q.event_shape:
        raise ValueError("KL-divergence between two Multivariate Normals with different event "
                         "shapes cannot be computed")
    p_tril, q_tril = p._unbroadcasted_scale_tril, q._unbroadcasted_scale_tril
    half_term1 = (q_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                  - p_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1))
    batch = torch.broadcast_shapes(tuple(int(s) for s in q_tril.shape[:-2]),
                                   tuple(int(s) for s in p_tril.shape[:-2]))
    n = int(p.event_shape[0])
    solved = torch.linalg.solve_triangular(q_tril.expand(batch + (n, n)),
                                           p_tril.expand(batch + (n, n)), upper=False)
    term2 = solved.reshape(-1, n * n).pow(2).sum(-1).reshape(solved.shape[:-2])  # tr(X X^T)
    term3 = _batch_mahalanobis(q_tril, q.loc - p.loc)
    return half_term1 + 0.5 * (term2 + term3 - n)


@register_kl(dist.MultivariateNormal, dist.MultivariateNormal)
def _kl_pyro_mvn_mvn(p, q):  # Pyro's MVNs (this guide's and the CTM prior's): the same KL
    return mvn_kl(p, q)


def _diagonal_as_mvn(p) -> tdist.MultivariateNormal:
    if not (isinstance(p.base_dist, tdist.Normal) and p.reinterpreted_batch_ndims == 1):
        raise NotImplementedError
    loc, scale = p.base_dist.loc, p.base_dist.scale
    return tdist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))


@register_kl(tdist.Independent, tdist.MultivariateNormal)
def _kl_diagonal_mvn(q, p):
    return mvn_kl(_diagonal_as_mvn(q), p)


@register_kl(tdist.MultivariateNormal, tdist.Independent)
def _kl_mvn_diagonal(q, p):
    return mvn_kl(q, _diagonal_as_mvn(p))


@register_kl(HouseholderNormal, tdist.MultivariateNormal)
def _kl_householder_mvn(q, p):
    # The flow applies H(v_1) first, so U = H(v_T) ... H(v_1): reverse the vectors.
    normal = q.base_normal.base_dist
    u = householder_product(q.vectors.flip(-2))
    return mvn_kl(rotated_normal(normal.loc, normal.scale, u), p)


@register_guide("ctf")
class CentralizedFlowGuide(DiagonalNormalGuide):
    """:param int num_flows: number of reflections T (the TF re-implementation uses 10)

    Other options as :class:`~guides.diagonal_normal.DiagonalNormalGuide` (AVITM's
    ``batch_norm=True`` heads are a good choice on topic models).
    """

    def __init__(self, model, num_flows: int = 4, **options):
        super().__init__(model, **options)
        if num_flows < 1:
            raise ValueError(f"num_flows must be at least 1, got {num_flows}.")
        self.options["num_flows"] = num_flows
        self.num_flows = num_flows
        # Rotate once the model's prior is learned: the engine's schedule sets this buffer as
        # it sets the model's (models without the quantity have a learned or fixed-from-the-
        # start prior: rotate from the start).
        learning = model.annealed_state().get("prior_learning", 1.0)
        self.register_buffer("prior_learning", torch.tensor(bool(learning)))
        self.mixers = nn.ModuleDict()
        for s in self.sites:
            d = s.event_shape[0]
            layers = nn.ModuleList(nn.Linear(d, d) for _ in range(num_flows - 1))
            for layer in layers:  # W_t = I, b_t = 0: the literal NVCTM rule at the start
                nn.init.eye_(layer.weight)
                nn.init.zeros_(layer.bias)
            self.mixers[s.name] = layers

    annealed = ("prior_learning",)

    @classmethod
    def why_not(cls, model):
        if model.graph_input:
            return "the model's data points are graphs; this guide encodes flat vectors."
        return super().why_not(model)

    def reflection_vectors(self, name: str, loc: torch.Tensor) -> torch.Tensor:
        r"""``v_1 = mu``, ``v_{t+1} = H(v_t) W_t v_t``; returns ``[batch, T, D]``."""
        v = loc
        vectors = [v]
        for layer in self.mixers[name]:
            w = layer(v)  # [batch, D]
            n = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            v = w - 2.0 * (w * n).sum(-1, keepdim=True) * n  # H(v_t) W_t v_t
            vectors.append(v)
        return torch.stack(vectors, dim=-2)

    def rotation(self, name: str, loc: torch.Tensor) -> torch.Tensor:
        """U for site ``name`` given the encoder means ``loc [batch, D]``: ``[batch, D, D]``."""
        return householder_product(self.reflection_vectors(name, loc))

    def site_dist(self, name, loc, scale, hidden):
        r"""The rotated Gaussian; :math:`U = I` while the model's prior is held fixed. A fixed
        isotropic prior makes the KL blind to :math:`U`, so the rotation could act only through
        the decoder, where it undoes the per-dimension BatchNorm of the encoder's heads that keeps
        AVITM-style encoders out of component collapse (README: NPMI 0.16 rotating during CTM's
        warm-up, 0.27 not)."""
        u = self.rotation(name, loc)  # [batch, D, D]
        # U = I while the prior is fixed, with the reflections kept in the graph at zero
        # weight: every parameter gets a (zero) gradient, as DistributedDataParallel and the
        # registry test expect. Chosen on the device (torch.where on the 0-d buffer), not by
        # reading the buffer back: no host synchronization per step on a GPU.
        identity = torch.eye(loc.shape[-1], dtype=loc.dtype, device=loc.device) + 0.0 * u
        u = torch.where(self.prior_learning, u, identity)
        return rotated_normal(loc, scale, u)
