"""Custom effect handlers (Pyro ``Messenger`` subclasses, one idea per file)."""

from zoo.poutine.latent_scale_messenger import LatentScaleMessenger, scale_latents  # noqa: F401
from zoo.poutine.log_weight_messenger import LogWeightMessenger, log_weight  # noqa: F401
from zoo.poutine.nested_resample_messenger import (  # noqa: F401
    NestedResampleMessenger,
    nested_resample,
)
from zoo.poutine.nested_score_messenger import NestedScoreMessenger, nested_score  # noqa: F401
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
