r"""Annealing targets for nested variational inference and the geometric path that reaches them.

Each target is an unnormalized density :math:`\gamma(z)` on :math:`\mathbb{R}^2` (or
:math:`\mathbb{R}^D` for :class:`GaussianTarget`) with its exact normalizer
:math:`Z = \int \gamma(z)\,dz` where it is known:

* ``ring``: the 8-mode ring of [1] §4.1, an *unweighted* sum of Gaussians

  .. math::

      \gamma(z) = \sum_{m=1}^{8} \mathcal{N}\big(z;\ 10(\sin\tfrac{2\pi m}{8},
      \cos\tfrac{2\pi m}{8}),\ 0.5\,I\big), \qquad \log Z = \log 8.

* ``banana``: a twisted Gaussian [2] with its normalizing constants dropped,

  .. math::

      \log\gamma(z) = -\frac{z_1^2}{2a^2} - \frac{(z_2 - b(z_1^2 - a^2))^2}{2},
      \qquad Z = 2\pi a.

* ``funnel``: Neal's funnel [3] in two dimensions, constants dropped,

  .. math::

      \log\gamma(v, x) = -\frac{v^2}{2\sigma^2} - \frac{x^2}{2e^{v}} - \frac{v}{2},
      \qquad Z = 2\pi\sigma.

The annealing path of [1] is geometric between a Gaussian :math:`\gamma_1 = \mathcal{N}(0,
s^2 I)` (normalized, :math:`Z_1 = 1`; [1] uses :math:`s = 5` for the ring) and the target:

.. math::

    \gamma_k(z) = \gamma_1(z)^{1-\beta_k}\,\gamma_K(z)^{\beta_k},
    \qquad 0 = \beta_1 < \dots < \beta_K = 1.

In Pyro, :math:`\gamma_k` is the program :func:`annealed_target`: one sample site whose
distribution :class:`AnnealedDensity` scores the unnormalized density. It has no sampler; it is
run with its value given (conditioned, replayed, or passed as ``obs``).

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
2. *Adaptive proposal distribution for random walk Metropolis algorithm*, H. Haario,
   E. Saksman, J. Tamminen (1999), Computational Statistics 14
3. *Slice sampling*, R. M. Neal (2003), Annals of Statistics 31(3)
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

_LOG_2PI = math.log(2 * math.pi)


def _normal_log_prob(z: torch.Tensor, loc, scale) -> torch.Tensor:
    """Sum over the last dim of independent Normal log densities (``scale`` a float or tensor)."""
    log_scale = torch.log(scale) if torch.is_tensor(scale) else math.log(scale)
    return (-0.5 * ((z - loc) / scale) ** 2 - log_scale - 0.5 * _LOG_2PI).sum(-1)


class Target(nn.Module):
    """An unnormalized density :math:`\\gamma` with ``log_density(z)`` for ``z`` of shape
    ``(..., dim)`` and ``log_z`` (``None`` when unknown)."""

    dim: int = 2
    log_z: float | None = None

    def log_density(self, z: torch.Tensor) -> torch.Tensor:  # (..., dim) -> (...)
        """The target's unnormalized log density at ``z`` (``[..., dim]`` -> ``[...]``)."""
        raise NotImplementedError


class RingGMM(Target):
    """The unweighted ring of ``num_modes`` Gaussians of [1] (radius 10, variance 0.5)."""

    def __init__(self, num_modes: int = 8, radius: float = 10.0, variance: float = 0.5):
        super().__init__()
        angles = 2 * math.pi * torch.arange(1, num_modes + 1) / num_modes
        self.register_buffer("locs", radius * torch.stack([angles.sin(), angles.cos()], -1))
        self.scale = math.sqrt(variance)
        self.log_z = math.log(num_modes)

    def log_density(self, z):
        """The log density of the ring of Gaussians at ``z``, times the number of modes (``[...,
        2]`` -> ``[...]``)."""
        # (..., 1, 2) against (M, 2) -> squared distances (..., M) -> logsumexp over modes (...)
        sq_dist = (z.unsqueeze(-2) - self.locs.to(z.dtype)).pow(2).sum(-1)
        log_norm = z.size(-1) * (math.log(self.scale) + 0.5 * _LOG_2PI)
        return torch.logsumexp(sq_dist / (-2 * self.scale**2), -1) - log_norm


class Banana(Target):
    """Twisted Gaussian: :math:`z_1 \\sim N(0, a^2)`,
    :math:`z_2 \\mid z_1 \\sim N(b(z_1^2-a^2), 1)`, unnormalized (:math:`Z = 2\\pi a`)."""

    def __init__(self, a: float = 2.0, b: float = 0.5):
        super().__init__()
        if a <= 0:
            raise ValueError(f"Banana needs a > 0 (the width of z_1), got a={a}.")
        self.a, self.b = a, b
        self.log_z = math.log(2 * math.pi * a)

    def log_density(self, z):
        """The unnormalized log density at ``z`` (``[..., 2]`` -> ``[...]``)."""
        z1, z2 = z[..., 0], z[..., 1]
        return -0.5 * (z1 / self.a) ** 2 - 0.5 * (z2 - self.b * (z1**2 - self.a**2)) ** 2


class Funnel(Target):
    """Neal's funnel: :math:`v \\sim N(0, \\sigma^2)`, :math:`x \\mid v \\sim N(0, e^{v})`,
    unnormalized (:math:`Z = 2\\pi\\sigma`)."""

    def __init__(self, sigma: float = 3.0):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"Funnel needs sigma > 0, got sigma={sigma}.")
        self.sigma = sigma
        self.log_z = math.log(2 * math.pi * sigma)

    def log_density(self, z):
        """The unnormalized log density of Neal's funnel at ``z`` (``[..., 2]`` -> ``[...]``)."""
        v, x = z[..., 0], z[..., 1]
        return -0.5 * (v / self.sigma) ** 2 - 0.5 * x**2 * torch.exp(-v) - 0.5 * v


class GaussianTarget(Target):
    """:math:`\\gamma(z) = Z\\,\\mathcal{N}(z; \\mu, \\mathrm{diag}(\\sigma^2))`: every density on
    a path to it is Gaussian, so tests can compute each weight by hand."""

    def __init__(self, loc, scale, log_z: float = 0.0):
        super().__init__()
        self.register_buffer("loc", torch.as_tensor(loc, dtype=torch.get_default_dtype()))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.get_default_dtype()))
        self.dim = self.loc.shape[-1]
        self.log_z = float(log_z)

    def log_density(self, z):
        """The log density at ``z``, times the target's Z (``[..., dim]`` -> ``[...]``)."""
        return self.log_z + _normal_log_prob(z, self.loc.to(z.dtype), self.scale.to(z.dtype))


TARGETS = {"ring": RingGMM, "banana": Banana, "funnel": Funnel}
#: The initial scale s of gamma_1 = N(0, s^2 I) used with each target ([1] uses 5 for the ring).
INIT_SCALES = {"ring": 5.0, "banana": 1.0, "funnel": 1.0}


def get_target(name: str, **options) -> Target:
    """Build the target density registered under ``name`` with ``options``."""
    if name not in TARGETS:
        raise ValueError(f"Unknown target '{name}'. Choose one of: {', '.join(sorted(TARGETS))}.")
    return TARGETS[name](**options)


class GeometricPath(nn.Module):
    r"""The geometric path :math:`\log\gamma_\beta = (1-\beta)\log\mathcal{N}(z; 0, s^2 I) +
    \beta\log\gamma_K(z)`; :math:`\log Z_0 = 0` and :math:`\log Z_1 = \log Z_K`."""

    def __init__(self, target: Target, init_scale: float = 1.0):
        super().__init__()
        self.target = target
        self.init_scale = float(init_scale)
        self.dim = target.dim
        # not saved (the state_dict is unchanged); it follows .to() and .double(), so that
        # gamma_1's draws come out on the module's device and in its floating-point type
        self.register_buffer("_like", torch.zeros(()), persistent=False)

    def init_log_density(self, z):  # log N(z; 0, s^2 I), (..., dim) -> (...)
        """The log density of the initial N(0, s^2 I) at ``z`` (``[..., dim]`` -> ``[...]``)."""
        log_norm = z.size(-1) * (math.log(self.init_scale) + 0.5 * _LOG_2PI)
        return z.pow(2).sum(-1) / (-2 * self.init_scale**2) - log_norm

    def log_density(self, z: torch.Tensor, beta) -> torch.Tensor:  # (..., dim) -> (...)
        """The log density of the annealed target at ``beta``: (1 - beta) log p_0(z) + beta log
        gamma(z)."""
        beta = torch.as_tensor(beta, dtype=z.dtype, device=z.device)
        return (1 - beta) * self.init_log_density(z) + beta * self.target.log_density(z)

    def init_distribution(self) -> dist.Normal:
        """:math:`\\gamma_1` as a distribution over one particle (event shape ``(dim,)``), on
        the module's device."""
        zero = self._like.new_zeros(self.dim)
        return dist.Normal(zero, self._like.new_full((self.dim,), self.init_scale)).to_event(1)


class AnnealedDensity(dist.TorchDistribution):
    """The unnormalized density :math:`\\gamma_\\beta` of a :class:`GeometricPath` as a
    distribution: ``log_prob`` scores it, ``sample`` is not defined (condition the site)."""

    arg_constraints = {}
    support = constraints.real_vector

    def __init__(self, path: GeometricPath, beta, batch_shape=(), validate_args=None):
        self.path, self.beta = path, beta
        super().__init__(torch.Size(batch_shape), torch.Size([path.dim]), validate_args)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) == self.batch_shape:
            return self
        return AnnealedDensity(self.path, self.beta, batch_shape, self._validate_args)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return self.path.log_density(value, self.beta)

    def sample(self, sample_shape=()):
        raise NotImplementedError(
            "An annealed target is an unnormalized density and has no sampler; give the site a "
            "value (obs=..., poutine.condition or poutine.replay)."
        )


def annealed_target(path: GeometricPath, beta, value: torch.Tensor, name: str = "z"):
    """The program :math:`\\gamma_\\beta`: scores ``value`` (``(particles, dim)``) at site
    ``name`` and returns the value the site ends up with (a handler may have replaced it)."""
    return pyro.sample(name, AnnealedDensity(path, beta), obs=value)
