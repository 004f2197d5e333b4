r"""Run a program over K particles at once, as a vectorized plate dimension.

Importance sampling, IWAE and resampling all need K independent draws of every latent. Drawing
them one trace at a time (as ``pyro.infer.Importance`` does) pays Pyro's per-trace overhead K
times; here the K particles are one more batch dimension, placed to the left of every plate the
program uses,

.. math::

    \texttt{dim} = -(\texttt{max\_plate\_nesting} + 1),

so that a site of batch shape ``[B]`` inside the data plate gets batch shape ``[K, B]`` and a
global site gets ``[K]`` (broadcast by Pyro's :class:`~pyro.poutine.broadcast_messenger.
BroadcastMessenger`). This is what ``Trace_ELBO(vectorize_particles=True)`` does internally [1];
we expose it as a handler so that our own estimators can use it.

**References:**

1. Pyro, ``pyro/infer/elbo.py`` (``_get_vectorized_trace``) and ``pyro/infer/importance.py``
   (``vectorized_importance_weights``).
"""

from __future__ import annotations

from pyro import poutine
from pyro.poutine.plate_messenger import PlateMessenger
from pyro.poutine.util import prune_subsample_sites

PARTICLES = "_particles"


class ParticlesMessenger(PlateMessenger):
    """A plate of ``num_particles`` independent copies at ``dim = -(max_plate_nesting + 1)``.

    :param int num_particles: K, the number of particles
    :param int max_plate_nesting: how many plates the program nests (see
        :func:`max_plate_nesting`); the particle dimension sits just left of them
    :param str name: name of the particle plate

    >>> def model():
    ...     with pyro.plate("data", 3):
    ...         return pyro.sample("z", dist.Normal(0.0, 1.0))
    >>> with ParticlesMessenger(num_particles=5, max_plate_nesting=1):
    ...     model().shape
    torch.Size([5, 3])
    """

    def __init__(self, num_particles: int, max_plate_nesting: int, name: str = PARTICLES):
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles}")
        if int(max_plate_nesting) < 0:
            raise ValueError(f"max_plate_nesting must be >= 0, got {max_plate_nesting}")
        self.num_particles = int(num_particles)
        self.max_plate_nesting = int(max_plate_nesting)
        super().__init__(name, size=self.num_particles, dim=-(self.max_plate_nesting + 1))


def particles(fn=None, num_particles: int = 1, max_plate_nesting: int = 1, name: str = PARTICLES):
    """Functional form of :class:`ParticlesMessenger`: ``particles(fn, num_particles=K,
    max_plate_nesting=1)(*args)`` runs ``fn`` once with K vectorized particles."""
    msngr = ParticlesMessenger(num_particles, max_plate_nesting, name)
    return msngr(fn) if fn is not None else msngr


def max_plate_nesting(model, guide, *args, **kwargs) -> int:
    """Deepest plate nesting of ``model`` and ``guide`` (how many batch dimensions to the right
    of the particle dimension), found by running both once without side effects, as
    :class:`pyro.infer.ELBO` guesses it."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    dims = [0]
    for trace in (prune_subsample_sites(guide_trace), prune_subsample_sites(model_trace)):
        for site in trace.nodes.values():
            if site["type"] == "sample":
                dims.extend(-f.dim for f in site["cond_indep_stack"] if f.vectorized)
    return max(dims)


__all__ = ["PARTICLES", "ParticlesMessenger", "max_plate_nesting", "particles"]
