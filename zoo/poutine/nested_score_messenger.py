r"""Score a program: accumulate the per-particle log density of every sample site it runs.

Nested VI [1] needs, at each level, four densities of the same particles: the previous target
and the forward kernel (the proposal :math:`\hat\gamma_k`), the next target and the reverse
kernel (:math:`\check\gamma_k`):

.. math::

    \log v_k = \underbrace{\log\gamma_k(z_k) + \log r_{k-1}(z_{k-1}\mid z_k)}_{\text{score of }
    \check\gamma_k}
    - \underbrace{\big(\log\gamma_{k-1}(z_{k-1}) + \log q_k(z_k\mid z_{k-1})\big)}_{\text{score of }
    \hat\gamma_k}.

:class:`NestedScoreMessenger` runs a program once and records :math:`\log p(\text{site})` for
every sample site (observed or not, ``pyro.factor`` included), summed over all dimensions but the
particle one, so ``log_prob`` has shape ``(num_particles,)``. Two options give the gradient
estimators the objectives need:

* ``stl=True`` scores the sites the program *samples* with stopped parameter gradients, the
  "sticking the landing" estimator [2]: :math:`\log q_{\bar\phi}(z_\phi)` keeps the pathwise
  gradient through :math:`z` and drops the score term, whose expectation is zero.
* ``reparameterized=False`` hands the program those sites' draws detached, i.e. without a pathwise
  gradient, as the forward-KL objective (a score-function, RWS-type gradient) requires.

    >>> loc = torch.zeros(2, requires_grad=True)
    >>> with pyro.plate("particles", 100, dim=-1):
    ...     with nested_score(stl=True) as score:
    ...         z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))
    >>> score.log_prob.shape, score.site_log_probs["z"].shape
    (torch.Size([100]), torch.Size([100]))

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
2. *Sticking the Landing: Simple, Lower-Variance Gradient Estimators for Variational Inference*,
   G. Roeder, Y. Wu, D. Duvenaud (2017), arXiv:1703.09194
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.messenger import Messenger


def detach_params(fn):
    """The same distribution with every parameter detached (Normal, Independent, ...)."""
    if isinstance(fn, dist.Independent):
        return dist.Independent(detach_params(fn.base_dist), fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.ExpandedDistribution):
        return detach_params(fn.base_dist).expand(fn.batch_shape)
    try:
        params = {name: getattr(fn, name).detach() for name in fn.arg_constraints}
        return type(fn)(**params, validate_args=False)
    except (AttributeError, TypeError) as error:
        raise NotImplementedError(
            f"Cannot stop the parameter gradients of {type(fn).__name__} for stl=True; use a "
            "distribution built from its arg_constraints (Normal, ...) or pass stl=False."
        ) from error


class NestedScoreMessenger(Messenger):
    """Accumulate per-particle log densities of all sample sites of a program.

    :param int particle_dim: the (negative) batch dimension that indexes particles.
    :param bool stl: score sampled (latent) sites with detached distribution parameters.
    :param bool reparameterized: keep the pathwise gradient of latent draws (else detach them).
    """

    def __init__(self, particle_dim: int = -1, stl: bool = False, reparameterized: bool = True):
        if particle_dim >= 0:
            raise ValueError(f"particle_dim must be negative (a batch dim), got {particle_dim}.")
        super().__init__()
        self.particle_dim = particle_dim
        self.stl = stl
        self.reparameterized = reparameterized
        self.site_log_probs: dict[str, torch.Tensor] = {}

    def __enter__(self):
        self.site_log_probs = {}
        return super().__enter__()

    @property
    def log_prob(self) -> torch.Tensor:
        """Sum over sites, shape ``(num_particles,)``."""
        if not self.site_log_probs:
            raise ValueError("The scored program ran no sample site; nothing to score.")
        return sum(self.site_log_probs.values())

    def _pyro_sample(self, msg):
        latent = not msg["is_observed"] and msg["value"] is None
        msg["infer"]["_nested_latent"] = latent

    def _pyro_post_sample(self, msg):
        fn = msg["fn"]
        if not self.reparameterized and msg["infer"].get("_nested_latent", False):
            # A detached draw is a draw without pathwise gradient; the program gets this value.
            msg["value"] = msg["value"].detach()
        if self.stl and msg["infer"].get("_nested_latent", False):
            fn = detach_params(fn)
        log_prob = scale_and_mask(fn.log_prob(msg["value"]), msg["scale"], msg["mask"])
        self.site_log_probs[msg["name"]] = self._per_particle(log_prob)

    def _per_particle(self, log_prob: torch.Tensor) -> torch.Tensor:
        # (..., S, ...) -> (S, rest) -> (S,): sum everything but the particle dim.
        dim = self.particle_dim
        if dim == -1 and log_prob.dim() == 1:
            return log_prob  # already (S,)
        if log_prob.dim() < -dim:  # the site broadcasts over particles
            log_prob = log_prob.reshape((1,) * (-dim - log_prob.dim()) + log_prob.shape)
        log_prob = log_prob.movedim(dim, 0)
        return log_prob.reshape(log_prob.size(0), -1).sum(-1)


def nested_score(fn=None, particle_dim: int = -1, stl: bool = False, reparameterized=True):
    """Functional wrapper of :class:`NestedScoreMessenger`."""
    messenger = NestedScoreMessenger(particle_dim, stl, reparameterized)
    return messenger(fn) if fn is not None else messenger
