"""Custom effect handlers (Pyro ``Messenger`` subclasses, one idea per file)."""

from zoo.poutine.log_weight_messenger import LogWeightMessenger, log_weight  # noqa: F401
from zoo.poutine.particles_messenger import (  # noqa: F401
    PARTICLES,
    ParticlesMessenger,
    max_plate_nesting,
    particles,
)
from zoo.poutine.resample_messenger import (  # noqa: F401
    ResampleMessenger,
    gather_particles,
    resample,
)
from zoo.poutine.score_function_messenger import (  # noqa: F401
    NotReparameterized,
    ScoreFunctionMessenger,
    mark_not_reparameterized,
    score_function,
)
