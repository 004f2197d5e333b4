"""Objectives and estimators built on Pyro's inference machinery and on our handlers."""

from zoo.infer.objectives import get_objective, list_objectives, register_objective  # noqa: F401
from zoo.infer import iwae  # noqa
