r"""KL warm-up: the ELBO with its prior/posterior terms weighted by :math:`\beta \in [0, 1]`.

Trace_ELBO's single-sample estimate splits into a reconstruction term and, per latent site
:math:`s`, a Monte Carlo KL term. Weighting every latent site's log-density (in the model *and*
the guide) by :math:`\beta` gives

.. math::

    \mathcal{L}_\beta(x) = \mathbb{E}_{q(z \mid x)}\Big[\log p(x \mid z)
        + \beta \sum_s \big(\log p(z_s \mid \mathrm{pa}_s) - \log q(z_s \mid x, \dots)\big)\Big]
    = \mathbb{E}_q[\log p(x \mid z)] - \beta\, \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big),

which is the ELBO at :math:`\beta = 1` and the reconstruction term alone at :math:`\beta = 0`.
Raising :math:`\beta` from 0 to 1 over the first part of training ("warm-up", [1, Sec. 2.3]; KL
cost annealing [2]) lets the guide put information into the latents before the KL term pulls
each unit back to its prior; Sønderby et al. [1] found it needed for the upper layers of deep
latent Gaussian models to stay active. With :math:`\beta < 1` the loss is *not* a bound on
:math:`\log p(x)`: report the plain ELBO (``zoo.evaluation.heldout_elbo``) for evaluation.

The weight is applied by :class:`LatentScaleMessenger`, a handler in the style of Pyro's
``poutine.scale`` that scales only unobserved sample sites (``poutine.scale`` scales every site,
and refuses a scale of 0). It multiplies whatever scale a site already carries, so minibatch
scaling by ``num_data / batch_size`` composes with it.

The objective is registered as ``"annealed"`` with the option ``kl_weight``; the schedule
(which :math:`\beta` at which epoch) belongs to the caller, e.g. ``fit(...,
objective="annealed", objective_options={"kl_weight": min(1, epoch / warmup)})`` epoch by
epoch with ``resume=True`` (``benchmarks/deep_models.py --kl-warmup`` does so in seconds).

**References:**

1. *Ladder Variational Autoencoders*, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby,
   O. Winther (2016), arXiv:1602.02282
2. *Generating Sentences from a Continuous Space*, S. R. Bowman, L. Vilnis, O. Vinyals,
   A. M. Dai, R. Jozefowicz, S. Bengio (2016), arXiv:1511.06349
"""

from __future__ import annotations

from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from zoo.infer.objectives import register_objective


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


class AnnealedELBO(Trace_ELBO):
    r"""``Trace_ELBO`` with every latent site weighted by ``kl_weight`` :math:`= \beta`, in
    model and guide alike (see the module docstring for the math).

    :param float kl_weight: :math:`\beta \ge 0`; 1 is exactly ``Trace_ELBO``
    """

    def __init__(self, kl_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.kl_weight = LatentScaleMessenger(kl_weight).scale  # validated there

    def _get_trace(self, model, guide, args, kwargs):
        # Every Trace_ELBO entry point (loss, differentiable_loss, loss_and_grads, with or
        # without vectorized particles) draws its traces through here.
        return super()._get_trace(scale_latents(model, self.kl_weight),
                                  scale_latents(guide, self.kl_weight), args, kwargs)


@register_objective("annealed")
def annealed(num_particles=1, max_plate_nesting=float("inf"), kl_weight=1.0, **options):
    """Factory for :class:`AnnealedELBO`, particles vectorized as for ``trace``."""
    return AnnealedELBO(kl_weight=kl_weight, num_particles=num_particles,
                        vectorize_particles=num_particles > 1,
                        max_plate_nesting=max_plate_nesting, **options)
