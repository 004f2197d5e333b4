"""Objectives and estimators built on Pyro's inference machinery and on our handlers."""

from zoo.infer import (
    annealing,  # noqa: F401  (registers "annealed")
    iwae,  # noqa: F401  (registers "iwae" and "iwae-dreg")
)
from zoo.infer.objectives import (  # noqa: F401
    get_objective,
    list_objectives,
    register_objective,
    training_loss,
)
