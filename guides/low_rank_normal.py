r"""Amortized Gaussian guide with diagonal-plus-low-rank covariance, one per latent site: the
recognition model of Rezende, Mohamed and Wierstra [1] for deep latent Gaussian models.

.. math::

    h = \mathrm{MLP}_\phi(x), \qquad
    q_\phi(z_s \mid x) = \mathcal{N}\big(\mu_s(h),\;
        \operatorname{diag}\sigma_s(h)^2 + U_s(h)\,U_s(h)^\top\big),
    \quad U_s(h) \in \mathbb{R}^{d_s \times r},

for each latent site :math:`s` (each layer of a DLGM), factorized over sites as in [1]. The
default rank is :math:`r = 1`. Sampling and the log-density cost :math:`O(d r^2)` through
:class:`~pyro.distributions.LowRankMultivariateNormal` (Woodbury and the matrix determinant
lemma), against :math:`O(d^3)` for a full covariance.

**Covariance or precision.** The paper [1] writes the rank-one update on the
*precision*, :math:`C^{-1} = D + u u^\top`; PyTorch offers it on the covariance. Woodbury's
identity maps one onto the other with the sign flipped,

.. math::

    (D + u u^\top)^{-1} = D^{-1} - v v^\top, \qquad
    v = \frac{D^{-1} u}{\sqrt{1 + u^\top D^{-1} u}},

so the inverse of a diagonal-plus-rank-one matrix is again diagonal-plus-rank-one: both forms
have :math:`2d` parameters, contain every diagonal Gaussian, and admit :math:`O(d)` sampling and
densities. They are mirror images rather than the same set: the off-diagonals of
:math:`D + u u^\top` are :math:`u_i u_j`, so around any three coordinates their product is
:math:`(u_i u_j u_k)^2 \ge 0`, while for :math:`D^{-1} - v v^\top` it is
:math:`-(v_i v_j v_k)^2 \le 0`: three mutually negatively correlated coordinates fit only the
paper's form, three mutually positively correlated ones only PyTorch's. In two dimensions both
reach every covariance. ``form="covariance"`` (default) is PyTorch's
:math:`\operatorname{diag}\sigma^2 + U U^\top`; ``form="precision"`` is the paper's
:math:`(\operatorname{diag}\sigma^{-2} + U U^\top)^{-1}`, through
:class:`~pyro.distributions.MultivariateNormal` with ``precision_matrix`` (cubic in :math:`d`,
fine for latent layers of tens of units).

**References:**

1. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
2. *Inverting Modified Matrices*, M. A. Woodbury (1950), Memorandum Report 42, Statistical
   Research Group, Princeton University
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from guides.diagonal_normal import DiagonalNormalGuide
from zoo.registry import register_guide

FORMS = ("covariance", "precision")


def low_rank_normal(loc, scale, factor, form: str = "covariance"):
    r"""The Gaussian with mean ``loc [..., d]``, diagonal part ``scale [..., d]`` and low-rank
    part ``factor [..., d, r]``:

    - ``"covariance"``: :math:`\Sigma = \operatorname{diag}(\text{scale}^2) + F F^\top`;
    - ``"precision"``: :math:`\Sigma^{-1} = \operatorname{diag}(\text{scale}^{-2}) + F F^\top`
      (so ``scale`` is still the standard deviation when ``factor = 0``).
    """
    if form == "covariance":
        return dist.LowRankMultivariateNormal(loc, factor, scale.pow(2))
    if form == "precision":
        precision = torch.diag_embed(scale.pow(-2)) + factor @ factor.transpose(-1, -2)
        return dist.MultivariateNormal(loc, precision_matrix=precision)  # [..., d, d]
    raise ValueError(f"form must be one of {FORMS}, got {form!r}")


def precision_to_covariance_factor(diag, u):
    r"""Woodbury for a rank-one precision update: :math:`(D + u u^\top)^{-1} = D^{-1} - v v^\top`.

    :param diag: the diagonal of :math:`D`, ``[..., d]``, positive
    :param u: ``[..., d]``
    :returns: ``(1 / diag, v)``, so that the covariance is ``diag_embed(1 / diag) - v v^T``
    """
    d_inv_u = u / diag  # [..., d]
    eta = (u * d_inv_u).sum(-1, keepdim=True)  # u^T D^{-1} u, [..., 1]
    return diag.reciprocal(), d_inv_u / torch.sqrt(1 + eta)


@register_guide("low_rank_normal")
class LowRankNormalGuide(DiagonalNormalGuide):
    """:param model: a model whose latent sites are all local real vectors (VAE, DLGM, NVDM, ...)
    :param int rank: columns of the low-rank factor per site (1 in [1])
    :param str form: ``"covariance"`` (PyTorch's diagonal-plus-low-rank covariance) or
        ``"precision"`` (the paper's diagonal-plus-low-rank precision)

    Other options as :class:`~guides.diagonal_normal.DiagonalNormalGuide` (the encoder trunk and
    the ``loc``/``scale`` heads are shared machinery; this guide adds one factor head per site).
    """

    def __init__(self, model, rank: int = 1, form: str = "covariance", **options):
        super().__init__(model, **options)
        if rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank}; rank=1 is [1]'s.")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        self.options.update(rank=rank, form=form)
        self.rank, self.form = rank, form
        self.factor_heads = nn.ModuleDict()
        for s in self.sites:
            head = nn.Linear(self.hidden_dim, s.event_shape[0] * rank)
            # Start close to the diagonal guide: a small factor, not an exactly zero one (at
            # U = 0 the gradients of U's columns would stay symmetric under a sign flip).
            nn.init.normal_(head.weight, std=1e-2)
            nn.init.zeros_(head.bias)
            self.factor_heads[s.name] = head

    def factor(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """``U(h)`` for site ``name``, shape ``[batch, d, rank]``."""
        out = self.factor_heads[name](hidden)  # [batch, d * rank]
        return out.unflatten(-1, (-1, self.rank))

    def site_dist(self, name, loc, scale, hidden):
        return low_rank_normal(loc, scale, self.factor(name, hidden), self.form)
