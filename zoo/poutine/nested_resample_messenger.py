r"""Replace the incoming particles of a program by their resampled ancestors.

Between two levels of nested importance sampling [1] the particles
:math:`(w_{k-1}^s, z_{k-1}^s)_{s=1}^S` are properly weighted for :math:`\gamma_{k-1}`. Resampling
draws ancestors :math:`a^s` (systematic or multinomial:
:func:`zoo.infer.resampling.resample_ancestors`) and replaces them by

.. math::

    \big(\tfrac{1}{S}\textstyle\sum_{s'} w_{k-1}^{s'},\ z_{k-1}^{a^s}\big)_{s=1}^S,

which are again properly weighted for :math:`\gamma_{k-1}` and leave
:math:`\hat Z_{k-1} = \frac1S\sum_s w_{k-1}^s` unchanged ([1] Eq. 17). The normalized weights of
the proposal become uniform, which is what keeps NVIR's gradient estimates from degenerating.

:class:`NestedResampleMessenger` applies this as a program transformation: every sample site of
the wrapped program whose value is *given* (``obs=``, or set by an inner ``poutine.condition`` or
``poutine.replay``) is gathered along the particle dimension with one shared set of ancestors,
the ones it is handed (one effect, as :class:`~zoo.poutine.resample_messenger.ResampleMessenger`
takes its indices; the caller draws them and computes the new weights):

    >>> import pyro.distributions as dist
    >>> values = torch.tensor([[0.0], [1.0], [2.0]])
    >>> with pyro.plate("particles", 3, dim=-1):
    ...     with nested_resample(indices=torch.tensor([2, 2, 0])):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1), obs=values)
    >>> z.squeeze(-1)
    tensor([2., 2., 0.])

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
"""

from __future__ import annotations

import pyro  # noqa: F401  (the doctest's namespace)
from pyro.poutine.messenger import Messenger


class NestedResampleMessenger(Messenger):
    """Gather given-value sites by ancestor ``indices`` ``(num_particles,)``.

    :param torch.Tensor indices: the ancestor of each particle, shape ``(S,)``.
    :param sites: names of the sites to resample (default: every site with a given value).
    :param int particle_dim: the (negative) batch dimension of particles.
    """

    def __init__(self, indices, sites=None, particle_dim=-1):
        if particle_dim >= 0:
            raise ValueError(f"particle_dim must be negative (a batch dim), got {particle_dim}.")
        if indices.dim() != 1:
            raise ValueError(f"Expected ancestor indices of shape (num_particles,), got "
                             f"{tuple(indices.shape)}; resample one set of particles at a time.")
        super().__init__()
        self.indices = indices
        self.sites = None if sites is None else set(sites)
        self.particle_dim = particle_dim

    def _pyro_sample(self, msg):
        if msg["value"] is None or (self.sites is not None and msg["name"] not in self.sites):
            return
        value = msg["value"]
        dim = self.particle_dim - msg["fn"].event_dim
        if value.dim() < -dim or value.size(dim) != self.indices.size(0):
            raise ValueError(
                f"Site '{msg['name']}' has value of shape {tuple(value.shape)}, which has no "
                f"particle dimension of size {self.indices.size(0)} at dim {dim}; run it inside "
                "pyro.plate('particles', S, dim=particle_dim) with one value per particle."
            )
        msg["value"] = value.index_select(dim, self.indices)


def nested_resample(fn=None, indices=None, sites=None, particle_dim=-1):
    """Functional wrapper of :class:`NestedResampleMessenger`."""
    if indices is None:
        raise ValueError("nested_resample needs indices=... (the particles' ancestors, e.g. from "
                         "zoo.infer.resampling.resample_ancestors).")
    messenger = NestedResampleMessenger(indices, sites, particle_dim)
    return messenger(fn) if fn is not None else messenger
