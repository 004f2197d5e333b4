r"""Held-out evaluation shared by the engine, the CLI and the benchmarks.

The held-out ELBO per data point,

.. math::

    \frac{1}{N_\text{test}} \sum_{n} \mathbb{E}_{q(z \mid x_n)}
        \big[\log p(x_n, z) - \log q(z \mid x_n)\big] \;\le\; \frac{1}{N_\text{test}}
        \sum_n \log p(x_n),

is estimated with ``Trace_ELBO`` (the plain Monte Carlo form, whichever objective trained the
guide, so that numbers are comparable across objectives), in batches, without gradients, with
model and guide in ``eval()`` mode (dropout off, BatchNorm on its running statistics).
"""

from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO

from zoo.models.base import evaluating, like_module


def batched(split, batch_size: int):
    """Yield consecutive dense batches of a :class:`~zoo.data.dataset.Split`, in order."""
    n = len(split)
    for start in range(0, n, batch_size):
        yield split.batch(torch.arange(start, min(start + batch_size, n)))


def heldout_elbo(model, guide, split, batch_size: int = 1000, num_particles: int = 1) -> float:
    """Mean ELBO per data point of ``split`` (nats; higher is better); batches go to the
    model's device and dtype."""
    elbo = Trace_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=model.max_plate_nesting,
    )
    total = 0.0
    with evaluating(model, guide):
        for x in batched(split, batch_size):
            total += elbo.loss(model, guide, like_module(x, model))  # -sum_n ELBO_n (scale 1)
    return -total / len(split)
