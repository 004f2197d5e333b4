r"""Replay a particle trace with its particles resampled: sampling-importance-resampling.

Given a trace of K weighted particles (values of batch shape ``[K, B]`` for local sites, ``[K]``
for global ones) and ancestor indices :math:`a_{j}` drawn by multinomial or systematic resampling
(:mod:`zoo.infer.resampling`), this handler replays every latent site with the value of particle
:math:`a_j` for :math:`j = 1..N`, so that a program run inside a particle plate of size N sees N
equally weighted draws,

.. math::

    z^{(j)} = z^{(a_j)}, \qquad a_j \sim \mathrm{Categorical}(\bar w_1, \dots, \bar w_K),

approximately distributed as the posterior :math:`p(z \mid x)` when the weights are
:math:`w_k = p(x, z_k) / q(z_k \mid x)` [1]. Indices of shape ``[N, B]`` resample each data
point separately (valid when every latent is local); indices of shape ``[N]`` resample whole
particles (needed as soon as a latent is global, whose weight is joint over the batch).

**References:**

1. *Using the SIR Algorithm to Simulate Posterior Distributions*, D. B. Rubin (1988),
   Bayesian Statistics 3, 395-402
"""

from __future__ import annotations

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


def gather_particles(value, event_dim, index, particle_dim, data_dim=None):
    """Select particles ``index`` (``[N]`` or ``[N, B]``) along the particle axis of ``value``.

    :param value: a site value, batch dims then ``event_dim`` event dims
    :param int particle_dim: the particle plate's (negative) batch dim
    :param int data_dim: the data plate's (negative) batch dim, required for ``[N, B]`` indices
    """
    n = -particle_dim
    batch_ndim = value.dim() - event_dim
    value = value.reshape((1,) * (n - batch_ndim) + value.shape)  # pad missing batch dims
    p_axis = n + particle_dim  # 0 after padding when the particle plate is outermost
    if index.dim() == 1:
        if value.shape[p_axis] == 1:  # broadcast particle dim: every particle is the same
            return value
        return value.index_select(p_axis, index)  # [.., N, ..]
    if data_dim is None:
        raise ValueError("per-data-point indices [N, B] need the data plate's dim")
    d_axis = n + data_dim
    num_samples, batch = index.shape
    shape = list(value.shape)
    shape[p_axis] = max(shape[p_axis], 1)
    shape[d_axis] = batch
    value = value.expand(shape)
    idx_shape = [1] * value.dim()
    idx_shape[p_axis], idx_shape[d_axis] = num_samples, batch
    if value.shape[p_axis] == 1:
        index = torch.zeros_like(index)
    out_shape = list(shape)
    out_shape[p_axis] = num_samples
    return value.gather(p_axis, index.reshape(idx_shape).expand(out_shape))  # [.., N, .., B, ..]


class ResampleMessenger(Messenger):
    """Replay latent sites of ``trace`` with particles ``index``.

    :param trace: a trace drawn inside :class:`~zoo.poutine.particles_messenger.
        ParticlesMessenger` (K particles)
    :param torch.Tensor index: ancestor indices, ``[N]`` (whole particles) or ``[N, B]`` (per
        data point)
    :param int particle_dim: the particle plate's dim, ``-(max_plate_nesting + 1)``
    :param str plate_name: the data plate's name (for ``[N, B]`` indices)

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> from pyro import poutine
    >>> from zoo.poutine import particles
    >>> def program():
    ...     with pyro.plate("data", 2):
    ...         return pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> trace = poutine.trace(particles(program, num_particles=3)).get_trace()  # z: [3, 2]
    >>> index = torch.tensor([[2, 0], [2, 0], [1, 1], [0, 0]])  # [N = 4, B = 2]
    >>> with particles(num_particles=4), ResampleMessenger(trace, index, particle_dim=-2):
    ...     z = program()
    >>> bool((z[:, 0] == trace.nodes["z"]["value"][index[:, 0], 0]).all()), tuple(z.shape)
    (True, (4, 2))
    """

    def __init__(self, trace, index: torch.Tensor, particle_dim: int, plate_name: str = "data"):
        super().__init__()
        if index.dim() not in (1, 2):
            raise ValueError(f"index must be [N] or [N, B], got shape {tuple(index.shape)}")
        self.trace = trace
        self.index = index
        self.particle_dim = particle_dim
        self.plate_name = plate_name

    def _pyro_sample(self, msg):
        name = msg["name"]
        if msg["is_observed"] or name not in self.trace:
            return
        site = self.trace.nodes[name]
        if site["type"] != "sample" or site_is_subsample(site):
            return
        frames = site["cond_indep_stack"]
        data = [f.dim for f in frames if f.name == self.plate_name and f.vectorized]
        if self.index.dim() == 2 and not data:
            raise ValueError(
                f"site '{name}' is global; resample whole particles with indices of shape [N]."
            )
        event_dim = site["fn"].event_dim
        msg["value"] = gather_particles(
            site["value"], event_dim, self.index, self.particle_dim, data[0] if data else None
        )
        msg["infer"] = site["infer"].copy()
        msg["done"] = True


def resample(fn=None, trace=None, index=None, particle_dim=-2, plate_name="data"):
    """Functional form of :class:`ResampleMessenger`."""
    msngr = ResampleMessenger(trace, index, particle_dim, plate_name)
    return msngr(fn) if fn is not None else msngr
