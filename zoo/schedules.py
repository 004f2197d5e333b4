r"""Schedules: the one mechanism for anything annealed during training.

A schedule is a function of where training is, a :class:`Progress`, to a number. Before every
optimizer step the engine (:func:`zoo.train.fit`) evaluates each schedule it was given and sets
the quantity of that name:

- ``"kl_weight"``, the weight :math:`\beta` of every latent site's log-density in model and
  guide alike (KL warm-up [1, 2]; the engine applies it with
  :class:`~zoo.poutine.latent_scale_messenger.LatentScaleMessenger`);
- any name a model or guide lists in its ``annealed`` attribute, which the engine sets with its
  ``set_annealed(name, value)`` (CTM's ``prior_learning``: the prior is held fixed, then
  learned; the ``ctf`` guide follows the same switch).

Models declare their own schedules in ``default_schedules()`` (CTM: ``prior_learning`` switches
on after ``prior_warmup`` epochs); the ``kl_warmup`` option of the engine adds
``{"kl_weight": LinearWarmup(epochs=kl_warmup)}``; a Python caller may pass any callable:

    >>> warmup = LinearWarmup(epochs=2)
    >>> [warmup(Progress(step=s, steps_per_epoch=4)) for s in (1, 4, 8, 9)]
    [0.125, 0.5, 1.0, 1.0]
    >>> Switch(epochs=1)(Progress(step=5, steps_per_epoch=4, epoch=1.0))
    1.0
    >>> LinearWarmup(seconds=30)(Progress(step=1, steps_per_epoch=1, seconds=15.0))
    0.5

The progress is saved in every checkpoint, so a resumed run continues every schedule exactly.

**References:**

1. *Ladder Variational Autoencoders*, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby,
   O. Winther (2016), arXiv:1602.02282
2. *Generating Sentences from a Continuous Space*, S. R. Bowman, L. Vilnis, O. Vinyals,
   A. M. Dai, R. Jozefowicz, S. Bengio (2016), arXiv:1511.06349
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

KL_WEIGHT = "kl_weight"


@dataclass(frozen=True)
class Progress:
    """Where training stands when a step is about to be taken.

    :ivar int step: optimizer steps taken so far, this one included (1 for the first)
    :ivar int steps_per_epoch: steps in one epoch (batches per pass over the data)
    :ivar float epoch: epochs completed before this step, counted in data points seen
        (``points seen / num_data``, so 1.5 is half-way through the second epoch)
    :ivar float seconds: training seconds before this step (evaluation excluded)
    """

    step: int
    steps_per_epoch: int
    epoch: float = 0.0
    seconds: float = 0.0


Schedule = Callable[[Progress], float]


@dataclass(frozen=True)
class LinearWarmup:
    r""":math:`\min(1, t / T)`: 0 to 1 linearly over ``epochs`` (counted in steps, this one
    included: :math:`t / T = \text{step} / (\text{epochs} \times \text{steps per epoch})`) or
    over ``seconds`` of training, then 1. Exactly one of the two is given; 0 means no warm-up."""

    epochs: float | None = None
    seconds: float | None = None

    def __post_init__(self):
        if (self.epochs is None) == (self.seconds is None):
            raise ValueError("LinearWarmup takes exactly one of epochs= and seconds=.")
        length = self.epochs if self.epochs is not None else self.seconds
        if not length >= 0:  # also refuses NaN
            raise ValueError(f"a warm-up length is a number >= 0 (0: no warm-up), got {length}.")

    def __call__(self, progress: Progress) -> float:
        if self.epochs is not None:
            if self.epochs == 0:
                return 1.0
            return min(1.0, progress.step / (self.epochs * progress.steps_per_epoch))
        if self.seconds == 0:
            return 1.0
        return min(1.0, progress.seconds / self.seconds)


@dataclass(frozen=True)
class Switch:
    """0 before ``epochs`` epochs of data points have been seen, then 1 (a prior held fixed for
    a warm-up, then learned)."""

    epochs: float

    def __post_init__(self):
        if not self.epochs >= 0:
            raise ValueError(f"a switch time is a number of epochs >= 0, got {self.epochs}.")

    def __call__(self, progress: Progress) -> float:
        return 1.0 if progress.epoch >= self.epochs else 0.0
