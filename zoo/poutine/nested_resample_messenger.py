r"""Resample the incoming particles of a program by their importance weights.

Between two levels of nested importance sampling [1] the particles
:math:`(w_{k-1}^s, z_{k-1}^s)_{s=1}^S` are properly weighted for :math:`\gamma_{k-1}`. Resampling
draws ancestors :math:`a^s` (systematic or multinomial, see :mod:`zoo.infer.resampling`) and
replaces them by

.. math::

    \big(\tfrac{1}{S}\textstyle\sum_{s'} w_{k-1}^{s'},\ z_{k-1}^{a^s}\big)_{s=1}^S,

which are again properly weighted for :math:`\gamma_{k-1}` and leave
:math:`\hat Z_{k-1} = \frac1S\sum_s w_{k-1}^s` unchanged ([1] Eq. 17). The normalized weights of
the proposal become uniform, which is what keeps NVIR's gradient estimates from degenerating.

:class:`NestedResampleMessenger` applies this as a program transformation: every sample site of
the wrapped program whose value is *given* (``obs=``, or set by an inner ``poutine.condition`` or
``poutine.replay``) is gathered along the particle dimension with one shared set of ancestors.
The new log weights are in ``messenger.log_weight`` and the ancestors in ``messenger.indices``.

Example::

    with pyro.plate("particles", S, dim=-1):
        with nested_resample(log_weight=log_w) as resampler:
            z_prev = pyro.sample("z_prev", gamma_prev, obs=z_prev)   # resampled value
            z = pyro.sample("z", kernel(z_prev))
    log_w = resampler.log_weight                                    # all equal

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger

from zoo.infer.resampling import log_mean_exp, resample


class NestedResampleMessenger(Messenger):
    """Gather given-value sites by ancestors drawn from ``log_weight`` ``(num_particles,)``.

    :param torch.Tensor log_weight: log weights of the incoming particles, shape ``(S,)``.
    :param str method: ``"systematic"`` or ``"multinomial"``.
    :param sites: names of the sites to resample (default: every site with a given value).
    :param int particle_dim: the (negative) batch dimension of particles.
    :param torch.Generator generator: optional source of randomness for the ancestors.
    """

    def __init__(self, log_weight, method="systematic", sites=None, particle_dim=-1,
                 generator=None):
        if particle_dim >= 0:
            raise ValueError(f"particle_dim must be negative (a batch dim), got {particle_dim}.")
        super().__init__()
        self.incoming_log_weight = log_weight.detach()
        self.method = method
        self.sites = None if sites is None else set(sites)
        self.particle_dim = particle_dim
        self.generator = generator
        self.indices: torch.Tensor | None = None
        self.log_weight: torch.Tensor | None = None

    def __enter__(self):
        # One set of ancestors per run, shared by all the sites it resamples.
        lw = self.incoming_log_weight
        if lw.dim() != 1:
            raise ValueError(
                f"Expected log weights of shape (num_particles,), got {tuple(lw.shape)}; resample "
                "one set of particles at a time.")
        self.indices = resample(lw, method=self.method, generator=self.generator)  # (S,)
        self.log_weight = log_mean_exp(lw).expand(lw.size(0)).clone()
        return super().__enter__()

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


def nested_resample(fn=None, log_weight=None, method="systematic", sites=None, particle_dim=-1,
                    generator=None):
    """Functional wrapper of :class:`NestedResampleMessenger`."""
    if log_weight is None:
        raise ValueError("nested_resample needs log_weight=... (the incoming particles' weights).")
    messenger = NestedResampleMessenger(log_weight, method, sites, particle_dim, generator)
    return messenger(fn) if fn is not None else messenger
