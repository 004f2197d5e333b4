r"""Training objectives, selected by name everywhere (``--elbo NAME``).

Every objective is a :class:`pyro.infer.ELBO`: calling it on ``(model, guide)`` gives an
``nn.Module`` whose ``forward(*args)`` is the loss (negative bound), the modern Pyro pattern
used with ``pyro.settings.set(module_local_params=True)`` and a ``torch.optim`` optimizer.

==============  =================================================================================
``trace``       ``Trace_ELBO``: Kingma & Welling's SGVB estimator A, Monte Carlo
                :math:`\log p(x, z) - \log q(z \mid x)` with reparameterized samples [1]
``meanfield``   ``TraceMeanField_ELBO``: estimator B, the KL term analytic where a closed form is
                registered, Monte Carlo otherwise [1] (:class:`~zoo.infer.meanfield.MeanFieldELBO`:
                Pyro's, without computing the terms it discards)
``tracegraph``  ``TraceGraph_ELBO``: score-function gradients with baselines for sites that
                cannot be reparameterized [2]
==============  =================================================================================

Objectives built on our own handlers (``iwae``, ...) register here too, from ``zoo.infer``.
:func:`training_loss` is what the engine trains: the objective, with the guide's training
algorithm around it where the guide declares one (semi-amortized LDA).

**References:**

1. *Auto-Encoding Variational Bayes*, D. P. Kingma, M. Welling (2013), arXiv:1312.6114
2. *Gradient Estimation Using Stochastic Computation Graphs*, J. Schulman, N. Heess, T. Weber,
   P. Abbeel (2015), arXiv:1506.05254
"""

from __future__ import annotations

from pyro.infer import ELBO, Trace_ELBO
from torch import nn

from zoo.infer.meanfield import MeanFieldELBO
from zoo.infer.semi_amortized import SemiAmortizedLoss
from zoo.infer.tracegraph import TraceGraphLoss
from zoo.registry import Registry

OBJECTIVES = Registry("objective", choices="Choose one of:")


def register_objective(name: str):
    """Decorator for a factory ``(num_particles=1, **options) -> ELBO``."""
    return OBJECTIVES.register(name)


def list_objectives() -> list[str]:
    """Names of the registered objectives, sorted."""
    return OBJECTIVES.names()


def get_objective(name: str, num_particles: int = 1, **options) -> ELBO:
    """The objective registered under ``name``, built with ``num_particles`` and ``options``."""
    return OBJECTIVES.get(name)(num_particles=num_particles, **options)


def training_loss(elbo: ELBO, model, guide) -> nn.Module:
    """The loss module the engine trains: ``elbo(model, guide)``, or, for a guide that declares
    a training algorithm of its own (``local_steps``, natural global steps), that algorithm
    around the objective (:class:`~zoo.infer.semi_amortized.SemiAmortizedLoss`)."""
    if guide.local_steps or guide.global_step != "gradient":
        return SemiAmortizedLoss(elbo, model, guide)
    return elbo(model, guide)


def _pyro_elbo(cls):
    def factory(num_particles=1, max_plate_nesting=float("inf"), **options):
        # Particles are a vectorized plate dimension, never a Python loop. Pass the model's
        # max_plate_nesting: otherwise Pyro guesses it by running model and guide once, which
        # draws random numbers at a point that differs between a fresh and a resumed run.
        vectorize = num_particles > 1
        return cls(
            num_particles=num_particles,
            vectorize_particles=vectorize,
            max_plate_nesting=max_plate_nesting,
            **options,
        )

    return factory


register_objective("trace")(_pyro_elbo(Trace_ELBO))
register_objective("meanfield")(_pyro_elbo(MeanFieldELBO))
register_objective("tracegraph")(_pyro_elbo(TraceGraphLoss))
