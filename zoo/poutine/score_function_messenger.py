r"""Force the score-function (REINFORCE) gradient on sites that could be reparameterized.

A reparameterizable site (``fn.has_rsample``) contributes the pathwise gradient
:math:`\mathbb{E}_\epsilon[\nabla_\phi f(g_\phi(\epsilon))]` to ``Trace_ELBO``. Under this
handler its distribution is wrapped in :class:`NotReparameterized` (``has_rsample`` False, the
``dist.has_rsample_(False)`` idea made to survive plates): the sample is drawn without a
gradient path and Pyro's ``TraceGraph_ELBO`` uses the score-function estimator instead [1, 2],

.. math::

    \nabla_\phi \mathbb{E}_{q_\phi}[f(z)] = \mathbb{E}_{q_\phi}\big[(f(z) - b)\,
        \nabla_\phi \log q_\phi(z)\big],

where :math:`b` is an optional baseline (any quantity independent of :math:`z`); Pyro reads it
from ``msg["infer"]["baseline"]``, which this handler can fill in (for example
``{"use_decaying_avg_baseline": True, "baseline_beta": 0.9}``). Applied to a guide, it lets one
compare estimators of the same gradient on the same model (``zoo.infer.gradient_variance``).

**References:**

1. *Simple Statistical Gradient-Following Algorithms for Connectionist Reinforcement Learning*,
   R. J. Williams (1992), Machine Learning 8
2. *Black Box Variational Inference*, R. Ranganath, S. Gerrish, D. Blei (2014), arXiv:1401.0118
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class ScoreFunctionMessenger(Messenger):
    """Mark latent sites as not reparameterizable, optionally with a baseline.

    :param sites: names of the sites to affect (default: every unobserved sample site)
    :param dict baseline: options for ``TraceGraph_ELBO``'s baseline, put in ``infer["baseline"]``

    >>> import pyro
    >>> import pyro.distributions as dist
    >>> from pyro import poutine
    >>> loc = torch.tensor(0.5, requires_grad=True)
    >>> def guide():
    ...     return pyro.sample("z", dist.Normal(loc, 1.0))
    >>> guide_sf = score_function(guide, baseline={"use_decaying_avg_baseline": True})
    >>> site = poutine.trace(guide_sf).get_trace().nodes["z"]
    >>> site["fn"].has_rsample, site["value"].requires_grad, "baseline" in site["infer"]
    (False, False, True)
    """

    def __init__(self, sites=None, baseline: dict | None = None):
        super().__init__()
        self.sites = None if sites is None else frozenset(sites)
        self.baseline = None if baseline is None else dict(baseline)

    def _selected(self, msg) -> bool:
        if msg["type"] != "sample" or msg["is_observed"] or site_is_subsample(msg):
            return False
        return self.sites is None or msg["name"] in self.sites

    def _pyro_sample(self, msg):
        if not self._selected(msg):
            return
        msg["fn"] = mark_not_reparameterized(msg["fn"])
        if self.baseline is not None:
            msg["infer"] = dict(msg["infer"], baseline=dict(self.baseline))

    def _pyro_post_sample(self, msg):
        # A transformed distribution pushes even a detached base sample through its (learned)
        # transforms; cut that path too, so the gradient is the score function alone.
        if self._selected(msg):
            msg["value"] = msg["value"].detach()


class NotReparameterized(TorchDistribution):
    """``base`` with ``has_rsample = False``: samples carry no gradient, log densities do.

    A wrapper rather than ``base.has_rsample_(False)``: ``Independent`` and
    ``TransformedDistribution`` expose ``has_rsample`` as a read-only property, and the flag set
    on an inner distribution would be lost when a plate broadcasts (``expand``) it.
    """

    has_rsample = False
    arg_constraints: dict = {}

    def __init__(self, base):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def sample(self, sample_shape=()):
        with torch.no_grad():
            return self.base.sample(sample_shape)

    def log_prob(self, value):
        return self.base.log_prob(value)

    def expand(self, batch_shape, _instance=None):
        return NotReparameterized(self.base.expand(batch_shape))


def mark_not_reparameterized(fn):
    """``fn`` as a distribution whose samples take the score-function path."""
    return fn if isinstance(fn, NotReparameterized) else NotReparameterized(fn)


def score_function(fn=None, sites=None, baseline=None):
    """Functional form of :class:`ScoreFunctionMessenger`."""
    msngr = ScoreFunctionMessenger(sites, baseline)
    return msngr(fn) if fn is not None else msngr
