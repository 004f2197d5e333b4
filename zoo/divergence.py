r"""The divergence guard of ``zoo train``: a training run whose held-out ELBO falls far below
the untrained model's has diverged, even when every number is still finite.

The engine (:mod:`zoo.train`) stops on a non-finite loss, gradient norm, parameter or buffer. At a
learning rate of 1e6 a Bernoulli VAE's loss instead explodes to a finite 1e32 and the run would
end "successfully". :class:`DivergenceGuard` is the engine's per-epoch ``check``: it runs after
every epoch, before that epoch's checkpoint is written, so the checkpoint on disk is still the
one before the divergence (the engine's message says which epoch it holds).
"""

from __future__ import annotations

import math

import torch

from zoo.evaluation import heldout_elbo

#: held-out points the guard scores at each evaluation (cheap next to an epoch)
GUARD_POINTS = 256
#: a held-out ELBO this many times worse than the untrained model's (in nats per data point,
#: at least this many nats below it) is a diverged run: no training ends that far below its start
GUARD_FACTOR = 1000.0


class DivergenceGuard:
    """``check(record)`` for :func:`zoo.train.fit`: a reason to stop when the epoch's held-out
    ELBO (on the epochs that evaluate) or its training ELBO (``-train_loss``, every epoch) per
    data point is not finite or far below the untrained model's held-out ELBO (see
    :data:`GUARD_FACTOR`). It draws no random numbers from the run's streams (its one estimate,
    of the untrained model, uses forked RNG states), so a guarded run trains as an unguarded one.
    """

    def __init__(self, model, guide, dataset):
        points = _First(dataset.test, min(GUARD_POINTS, len(dataset.test)))
        device = next(iter(model.parameters()), torch.zeros(())).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.baseline = heldout_elbo(model, guide, points, batch_size=len(points))
        self.floor = self.baseline - GUARD_FACTOR * max(1.0, abs(self.baseline))

    def __call__(self, record: dict) -> str | None:
        for key, label in (("heldout_elbo", "the held-out ELBO"),
                           ("train_loss", "the training ELBO")):
            if key not in record:
                continue
            value = record[key] if key == "heldout_elbo" else -record[key]
            if not math.isfinite(value) or value < self.floor:
                return (f"training diverged: {label} became {value:.4g} per data point after "
                        f"epoch {record['epoch']} (the untrained model's held-out ELBO: "
                        f"{self.baseline:.4g})")
        return None


class _First:
    """The first ``size`` points of a split (a test split's points are fixed: binarized once)."""

    def __init__(self, split, size: int):
        self.split, self.size = split, size

    def __len__(self):
        return self.size

    def batch(self, index, generator=None):
        return self.split.batch(index, generator)
