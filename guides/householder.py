r"""Householder flow guide: a diagonal Gaussian rotated by T amortized Householder reflections.

.. math::

    z_0 \sim \mathcal{N}\big(\mu(x), \operatorname{diag}\sigma(x)^2\big), \qquad
    z_t = \Big(I - 2\,\frac{v_t v_t^\top}{\lVert v_t\rVert^2}\Big) z_{t-1}, \quad t = 1..T,

with :math:`v_1 = W_1 h(x)` computed from the encoder's last hidden layer and
:math:`v_{t+1} = W_{t+1} v_t` (Tomczak & Welling [1], Sec. 3). Each reflection is orthogonal, so
the flow is volume preserving, :math:`\log|\det \partial z_T/\partial z_0| = 0`, and
:math:`q(z_T) = q(z_0)`; the product :math:`U = H_T \cdots H_1` turns the diagonal covariance
into the full covariance :math:`U \Sigma U^\top`.

The reflections are Pyro's :class:`~pyro.distributions.transforms.ConditionedHouseholder` with
batched vectors. Under an isotropic prior :math:`\mathcal{N}(0, s^2 I)`, which is invariant under
rotations, :math:`\mathrm{KL}(q_T \Vert p) = \mathrm{KL}(q_0 \Vert p)`: we register that KL, so
``TraceMeanField_ELBO`` (``--elbo meanfield``) is analytic here too; under any other prior the
KL is not registered and Pyro falls back to its Monte Carlo estimate.

**References:**

1. *Improving Variational Auto-Encoders using Householder Flow*, J. M. Tomczak, M. Welling (2016),
   arXiv:1611.09630
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.transforms.householder import ConditionedHouseholder
from torch import nn
from torch.distributions import kl_divergence, register_kl

from guides.diagonal_normal import DiagonalNormalGuide
from zoo.models import checks
from zoo.registry import register_guide


class HouseholderNormal(dist.TransformedDistribution):
    """``N(loc, diag scale^2)`` pushed through Householder reflections ``vectors [..., T, D]``."""

    def __init__(self, loc, scale, vectors, validate_args=None):
        self.vectors = vectors  # [..., T, D]
        self.base_normal = dist.Normal(loc, scale).to_event(1)
        super().__init__(self.base_normal, [ConditionedHouseholder(vectors)], validate_args)

    def expand(self, batch_shape, _instance=None):
        # Plates broadcast a site's distribution to the plate shape (e.g. a particle plate).
        batch_shape = torch.Size(batch_shape)
        normal = self.base_normal.base_dist
        return HouseholderNormal(
            normal.loc.expand(batch_shape + self.event_shape),
            normal.scale.expand(batch_shape + self.event_shape),
            self.vectors.expand(batch_shape + self.vectors.shape[-2:]),
            validate_args=self._validate_args,
        )


def _isotropic_zero_mean_normal(p) -> bool:
    if not (isinstance(p, dist.Independent) and isinstance(p.base_dist, dist.Normal)):
        return False
    if p.reinterpreted_batch_ndims != 1:
        return False
    loc, scale = p.base_dist.loc, p.base_dist.scale
    # one read back on the host, not two (on a GPU each read waits for the queued kernels)
    return bool((loc == 0).all() & (scale == scale[..., :1]).all())


@register_kl(HouseholderNormal, dist.Independent)
def _kl_householder_isotropic(q, p):
    if not _isotropic_zero_mean_normal(p):
        raise NotImplementedError  # Pyro's TraceMeanField_ELBO then uses Monte Carlo
    return kl_divergence(q.base_normal, p)


@register_guide("householder")
class HouseholderGuide(DiagonalNormalGuide):
    """:param int num_flows: number of reflections T (Tomczak & Welling use 1 to 10)

    Other options as :class:`~guides.diagonal_normal.DiagonalNormalGuide`.
    """

    def __init__(self, model, num_flows: int = 4, **options):
        checks.count("num_flows", num_flows)
        super().__init__(model, **options)
        self.options["num_flows"] = num_flows
        self.num_flows = num_flows
        self.first_vector = nn.ModuleDict(
            {s.name: nn.Linear(self.hidden_dim, s.event_shape[0]) for s in self.sites}
        )
        self.next_vector = nn.ModuleDict(
            {
                s.name: nn.ModuleList(
                    nn.Linear(s.event_shape[0], s.event_shape[0]) for _ in range(num_flows - 1)
                )
                for s in self.sites
            }
        )

    def reflection_vectors(self, name: str, hidden: torch.Tensor) -> torch.Tensor:
        """``v_1 .. v_T`` for site ``name``, shape ``[batch, T, D]``."""
        v = self.first_vector[name](hidden)
        vectors = [v]
        for layer in self.next_vector[name]:
            v = layer(v)
            vectors.append(v)
        return torch.stack(vectors, dim=-2)

    def site_dist(self, name, loc, scale, hidden):
        return HouseholderNormal(loc, scale, self.reflection_vectors(name, hidden))
