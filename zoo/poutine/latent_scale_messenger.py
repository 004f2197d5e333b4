r"""Weight the log-density of every latent sample site: the handler behind KL warm-up.

Trace_ELBO's single-sample estimate splits into a reconstruction term and, per latent site
:math:`s`, a Monte Carlo KL term. Weighting every latent site's log-density (in the model *and*
the guide) by :math:`\beta` gives

.. math::

    \mathcal{L}_\beta(x) = \mathbb{E}_{q(z \mid x)}\Big[\log p(x \mid z)
        + \beta \sum_s \big(\log p(z_s \mid \mathrm{pa}_s) - \log q(z_s \mid x, \dots)\big)\Big]
    = \mathbb{E}_q[\log p(x \mid z)] - \beta\, \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big),

the ELBO at :math:`\beta = 1` and the reconstruction term alone at :math:`\beta = 0` [1, 2].
:class:`LatentScaleMessenger` is ``poutine.scale`` restricted to unobserved sites
(``poutine.scale`` scales every site, and refuses a scale of 0). It multiplies whatever scale a
site already carries, so minibatch scaling by ``num_data / batch_size`` composes with it:

    >>> import pyro.distributions as dist
    >>> def model():
    ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
    ...     pyro.sample("x", dist.Normal(z, 1.0), obs=torch.tensor(0.5))
    >>> trace = poutine.trace(scale_latents(model, scale=0.25)).get_trace()
    >>> trace.nodes["z"]["scale"], trace.nodes["x"]["scale"]
    (0.25, 1.0)

The engine applies it with the ``kl_weight`` schedule (:mod:`zoo.schedules`); the ``annealed``
objective with a constant weight (:mod:`zoo.infer.annealing`).

**References:**

1. *Ladder Variational Autoencoders*, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby,
   O. Winther (2016), arXiv:1602.02282
2. *Generating Sentences from a Continuous Space*, S. R. Bowman, L. Vilnis, O. Vinyals,
   A. M. Dai, R. Jozefowicz, S. Bengio (2016), arXiv:1511.06349
"""

from __future__ import annotations

import pyro  # noqa: F401  (the doctest's namespace)
import torch  # noqa: F401
from pyro import poutine  # noqa: F401
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


class LatentScaleMessenger(Messenger):
    r"""Multiply the log-density of every latent (unobserved, non-subsample) sample site by
    ``scale`` :math:`\ge 0`; observed sites keep their scale.

    :param float scale: the weight :math:`\beta`; 0 drops the latents' terms altogether
    """

    def __init__(self, scale: float):
        super().__init__()
        scale = float(scale)
        if not scale >= 0:  # also rejects NaN
            raise ValueError(f"the latent scale (KL weight) must be >= 0, got {scale}")
        self.scale = scale

    def _pyro_sample(self, msg):
        if msg["is_observed"] or site_is_subsample(msg):
            return
        msg["scale"] = self.scale * msg["scale"]


def scale_latents(fn=None, scale: float = 1.0):
    """Functional form of :class:`LatentScaleMessenger`, as ``poutine.scale``."""
    msngr = LatentScaleMessenger(scale)
    return msngr(fn) if fn is not None else msngr
