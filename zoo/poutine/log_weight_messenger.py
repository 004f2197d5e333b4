r"""Accumulate importance log weights, per particle and per data point.

Run under :func:`~pyro.poutine.replay` of a guide trace drawn with K particles, the model visits
every site once; this handler adds up

.. math::

    \log w_{k,n} = \sum_{s\ \text{local}} \big[\log p(v^{(s)}_{k,n} \mid \cdot)
        - \log q(v^{(s)}_{k,n} \mid \cdot)\big], \qquad
    \log w^{\text{global}}_k = \sum_{s\ \text{global}} \big[\log p - \log q\big],

where *local* sites sit inside the data plate (one term per data point n, observations included)
and *global* sites do not (one term per particle k). With only local latents the data points are
independent given the parameters and :math:`\log w_{k,n}` is the weight of data point n [1];
with global latents only the joint weight :math:`\log w^{\text{global}}_k + \sum_n \log w_{k,n}`
is an importance weight. (Pyro's ``Importance`` keeps one weight per whole trace, and
``RenyiELBO`` is per data point only over plates that hold every site; see
``notes/pyro-anchors.md`` section 5.6.)

Log densities are **unscaled**: the subsample scale ``num_data / batch_size`` of the data plate
is recorded in ``LogWeightMessenger.data_scale``, not applied, because a weight is a property
of the data points in the batch. Masks are applied. Guide sites the model never visits
(auxiliary variables) are subtracted when the handler exits.

**References:**

1. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519, Sec. 3
"""

from __future__ import annotations

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class LogWeightMessenger(Messenger):
    """Add ``log p - log q`` of every sample site, reduced to ``[K, B]`` (local) and ``[K]``.

    :param guide_trace: the guide trace being replayed (its ``fn`` give ``log q``); ``None``
        scores the program alone (``log p`` only, e.g. to score the guide itself)
    :param int num_particles: K
    :param int particle_dim: the particle plate's dim (``-(max_plate_nesting + 1)``)
    :param str plate_name: name of the data plate (``model.plate_name``)
    :ivar torch.Tensor local: ``[K, B]`` log weights of local sites (0. before any site)
    :ivar torch.Tensor glob: ``[K]`` log weights of global sites

    >>> import pyro.distributions as dist
    >>> from pyro import poutine
    >>> from zoo.poutine import particles
    >>> def model(x):
    ...     with pyro.plate("data", 3):
    ...         z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...         pyro.sample("x", dist.Normal(z, 1.0), obs=x)
    >>> def guide(x):
    ...     with pyro.plate("data", 3):
    ...         pyro.sample("z", dist.Normal(0.5 * x, 0.8))
    >>> x = torch.tensor([0.0, 1.0, 2.0])
    >>> guide_trace = poutine.trace(particles(guide, num_particles=4)).get_trace(x)
    >>> with LogWeightMessenger(guide_trace, 4, particle_dim=-2) as lw:
    ...     particles(poutine.replay(model, trace=guide_trace), num_particles=4)(x)
    >>> lw.local.shape, lw.total().shape  # per particle and data point; joint per particle
    (torch.Size([4, 3]), torch.Size([4]))
    """

    def __init__(self, guide_trace, num_particles: int, particle_dim: int, plate_name="data"):
        super().__init__()
        self.guide_trace = guide_trace
        self.num_particles = num_particles
        self.particle_dim = particle_dim
        self.plate_name = plate_name
        self.local = torch.zeros(())
        self.glob = torch.zeros(())
        self.batch_size = 1
        self.data_scale = 1.0
        self.has_local = False
        self.has_global = False
        self._seen: set[str] = set()

    def _reduce(self, log_prob: torch.Tensor, frames) -> tuple[torch.Tensor, bool]:
        """Sum a site's ``log_prob`` over every batch dim except particles and data points."""
        n = -self.particle_dim
        if log_prob.dim() > n:
            raise ValueError(
                f"log_prob of shape {tuple(log_prob.shape)} has more batch dims than "
                f"max_plate_nesting + 1 = {n}; pass a larger max_plate_nesting."
            )
        lp = log_prob.reshape((1,) * (n - log_prob.dim()) + log_prob.shape)  # [.., n dims]
        data = [f for f in frames if f.name == self.plate_name and f.vectorized]
        keep = [n + self.particle_dim] + ([n + data[0].dim] if data else [])
        other = [d for d in range(n) if d not in keep]
        lp = lp.sum(other) if other else lp  # [K or 1] or [K or 1, B or 1]
        if data:
            self.batch_size = data[0].size
            lp = lp.expand(self.num_particles, data[0].size)  # [K, B]
        else:
            lp = lp.expand(self.num_particles)  # [K]
        return lp, bool(data)

    def _add(self, log_prob, frames, mask, sign):
        lp, local = self._reduce(scale_and_mask(log_prob, 1.0, mask), frames)
        if local:
            self.local = self.local + sign * lp
            self.has_local = True
        else:
            self.glob = self.glob + sign * lp
            self.has_global = True

    def _pyro_post_sample(self, msg):
        if msg["type"] != "sample" or site_is_subsample(msg):
            return
        name = msg["name"]
        self._seen.add(name)
        frames = msg["cond_indep_stack"]
        for f in frames:
            if f.name == self.plate_name and f.vectorized and msg["scale"] is not None:
                full = f.full_size if f.full_size is not None else f.size
                self.data_scale = float(full) / float(f.size)
        site = None if self.guide_trace is None else self.guide_trace.nodes.get(name)
        if site is None and not msg["is_observed"] and self.guide_trace is not None:
            return  # drawn from the model's own conditional: proposal = target, terms cancel
        self._add(msg["fn"].log_prob(msg["value"]), frames, msg["mask"], +1.0)
        if site is None or msg["is_observed"]:
            return
        self._add(site["fn"].log_prob(site["value"]), site["cond_indep_stack"], site["mask"], -1.0)

    def __exit__(self, *args, **kwargs):
        if self.guide_trace is not None and args[0] is None:
            for name, site in self.guide_trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site) or name in self._seen:
                    continue
                lq = site["fn"].log_prob(site["value"])
                self._add(lq, site["cond_indep_stack"], site["mask"], -1.0)
        return super().__exit__(*args, **kwargs)

    def total(self) -> torch.Tensor:
        """Joint log weight per particle, ``[K]``: global plus the sum over data points."""
        local = self.local.sum(-1) if self.has_local else self.local
        return (self.glob + local).expand(self.num_particles)


def log_weight(fn=None, guide_trace=None, num_particles=1, particle_dim=-2, plate_name="data"):
    """Functional form of :class:`LogWeightMessenger`; with ``fn``, the weights of the last call
    are on ``wrapped.msngr``."""
    msngr = LogWeightMessenger(guide_trace, num_particles, particle_dim, plate_name)
    if fn is None:
        return msngr
    wrapped = msngr(fn)
    wrapped.msngr = msngr  # the accumulated weights, after a call
    return wrapped
