r"""The :math:`\beta`-weighted ELBO as an objective (``--elbo annealed``): every latent site's
log-density weighted by a constant ``kl_weight``.

.. math::

    \mathcal{L}_\beta(x) = \mathbb{E}_q[\log p(x \mid z)]
        - \beta\, \mathrm{KL}\big(q(z \mid x) \,\|\, p(z)\big)

(:mod:`zoo.poutine.latent_scale_messenger`). With :math:`\beta < 1` the loss is *not* a bound on
:math:`\log p(x)`: report the plain ELBO (``zoo.evaluation.heldout_elbo``) for evaluation. A
weight that *changes* during training (KL warm-up, :math:`\beta` from 0 to 1) is a schedule of
the engine, not an objective: ``fit(..., kl_warmup=EPOCHS)`` or ``schedules={"kl_weight": ...}``
(:mod:`zoo.schedules`), for any objective.
"""

from __future__ import annotations

from pyro.infer import Trace_ELBO

from zoo.infer.objectives import register_objective
from zoo.poutine.latent_scale_messenger import LatentScaleMessenger, scale_latents


class AnnealedELBO(Trace_ELBO):
    r"""``Trace_ELBO`` with every latent site weighted by ``kl_weight`` :math:`= \beta`, in
    model and guide alike.

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
