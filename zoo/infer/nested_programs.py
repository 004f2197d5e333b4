r"""The programs of nested variational inference: kernels, annealing schedules, and the two
densities compared at every level.

For levels :math:`k = 1, \dots, K-1` (level 0 is :math:`\gamma_0 = \mathcal{N}(0, s^2 I)`), [1]
Eq. 5 compares a *forward* density, which we can sample, with a *reverse* density, which has
the next target as its marginal:

.. math::

    \hat\gamma_k(z_k, z_{k-1}) = \gamma_{k-1}(z_{k-1})\, q_k(z_k \mid z_{k-1}), \qquad
    \check\gamma_k(z_k, z_{k-1}) = \gamma_k(z_k)\, r_{k-1}(z_{k-1} \mid z_k).

:meth:`NestedPrograms.proposal` is the Pyro program of :math:`\hat\gamma_k` (a *compose* of
the previous target and the forward kernel in the language of [1, 2]),
:meth:`NestedPrograms.extended_target` that of :math:`\check\gamma_k` (an *extend* of the next
target by the reverse kernel). Both use
the site names ``"z_prev"`` and ``"z"``, so scoring one under the other's values is a replay.

The kernels are Gaussian with an MLP-parameterized residual mean and a scale ([1] §4.1, [2]):

.. math::

    h = \mathrm{ReLU}(W_1 x + b_1), \qquad
    \mu = x + W_2 h + b_2, \qquad \sigma = \mathrm{softplus}(W_3 h + b_3),

with :math:`W_2, W_3` zero-initialized, so every kernel starts as
:math:`\mathcal{N}(x, \mathrm{softplus}(b_3)^2 I)`.

The annealing exponents are :math:`\beta_k = k/(K-1)` (``linear``), or learned and monotone
(``learned``, NVI* in [1]): with increments :math:`\delta_j = \mathrm{softplus}(a_j)`,

.. math::

    \beta_k = \frac{\sum_{j \le k}\delta_j}{\sum_{j \le K-1}\delta_j},\qquad
    \beta_0 = 0 < \beta_1 < \dots < \beta_{K-1} = 1,

initialized at :math:`a = 0`, i.e. linear.

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
2. *coix* (the authors' JAX library), ``examples/anneal.py``, github.com/jax-ml/coix
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from torch import nn

from zoo.models.targets import GeometricPath, annealed_target

SCHEDULES = ("linear", "learned")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class DiagonalNormal(dist.TorchDistribution):
    r""":math:`\mathcal{N}(\mu, \mathrm{diag}(\sigma^2))` over the last dimension; the same
    density as ``Normal(loc, scale).to_event(1)``, lean enough to run once per level."""

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.independent(
        constraints.positive, 1)}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args=None):
        self.loc, self.scale = loc, scale
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args)

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        if batch_shape == self.batch_shape:
            return self  # what a plate asks of a kernel already batched over particles
        shape = batch_shape + self.event_shape
        return DiagonalNormal(self.loc.expand(shape), self.scale.expand(shape),
                              self._validate_args)

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        return self.loc + self.scale * torch.randn(shape, dtype=self.loc.dtype,
                                                   device=self.loc.device)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (-0.5 * ((value - self.loc) / self.scale) ** 2 - torch.log(self.scale)
                - _HALF_LOG_2PI).sum(-1)


class GaussianKernel(nn.Module):
    r"""The kernel :math:`\mathcal{N}(x + \mathrm{MLP}_\mu(x),
    \mathrm{softplus}(\mathrm{MLP}_\sigma(x))^2)` as a program: ``kernel(x, name, obs=None)``
    samples (or scores ``obs`` at) site ``name``."""

    def __init__(self, dim: int = 2, hidden_dim: int = 50):
        super().__init__()
        self.hidden = nn.Linear(dim, hidden_dim)
        self.loc = nn.Linear(hidden_dim, dim)
        self.scale = nn.Linear(hidden_dim, dim)
        for layer in (self.loc, self.scale):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def distribution(self, x: torch.Tensor) -> DiagonalNormal:
        """The kernel's diagonal Gaussian at ``x``: location ``x`` plus a learned shift, learned
        scale."""
        h = torch.relu(self.hidden(x))  # (S, hidden)
        loc = x + self.loc(h)  # (S, dim)
        scale = F.softplus(self.scale(h))
        return DiagonalNormal(loc, scale)

    def forward(self, x: torch.Tensor, name: str = "z", obs: torch.Tensor | None = None):
        """Sample (or, with ``obs``, score) site ``name`` from :meth:`distribution` at ``x``."""
        return pyro.sample(name, self.distribution(x), obs=obs)


class LinearSchedule(nn.Module):
    """Fixed :math:`\\beta_k = k / (K - 1)`."""

    def __init__(self, num_levels: int):
        super().__init__()
        self.register_buffer("betas", torch.linspace(0.0, 1.0, num_levels))

    def forward(self) -> torch.Tensor:  # (K,)
        """The fixed, evenly spaced annealing schedule beta_0 = 0, ..., beta_K = 1."""
        return self.betas


class LearnedSchedule(nn.Module):
    """Monotone learned :math:`\\beta` through normalized cumulative softplus increments."""

    def __init__(self, num_levels: int):
        super().__init__()
        self.increments = nn.Parameter(torch.zeros(num_levels - 1))

    def forward(self) -> torch.Tensor:  # (K,)
        """The annealing schedule beta_0 = 0 < ... < beta_K = 1, from learned positive increments.
        """
        steps = F.softplus(self.increments).cumsum(0)
        return torch.cat([steps.new_zeros(1), steps / steps[-1]])


class NestedPrograms(nn.Module):
    """The sequence of targets and the forward and reverse kernels between them.

    :param GeometricPath path: :math:`\\gamma_0 = \\mathcal{N}(0, s^2 I)` to the target.
    :param int num_levels: :math:`K \\ge 2` (the paper's :math:`K`, counting :math:`\\gamma_0`).
    :param str schedule: ``"linear"`` or ``"learned"``.
    """

    def __init__(self, path: GeometricPath, num_levels: int, schedule: str = "linear",
                 hidden_dim: int = 50):
        super().__init__()
        if num_levels < 2:
            raise ValueError(
                f"Nested VI needs num_levels >= 2 (initial and target), got {num_levels}.")
        if schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule '{schedule}'. Choose one of: {SCHEDULES}.")
        self.path = path
        self.num_levels = num_levels
        self.schedule_name = schedule
        self.schedule = LinearSchedule(num_levels) if schedule == "linear" else LearnedSchedule(
            num_levels)
        dim = path.dim
        self.forward_kernels = nn.ModuleList(GaussianKernel(dim, hidden_dim)
                                             for _ in range(num_levels - 1))
        self.reverse_kernels = nn.ModuleList(GaussianKernel(dim, hidden_dim)
                                             for _ in range(num_levels - 1))

    @property
    def learns_targets(self) -> bool:
        """Whether the intermediate targets have parameters (a learned schedule)."""
        return self.schedule_name == "learned"

    def initial(self, num_particles: int) -> torch.Tensor:
        """Program :math:`z_0 \\sim \\gamma_0`; returns ``(S, dim)``."""
        with pyro.plate("particles", num_particles, dim=-1):
            return pyro.sample("z", self.path.init_distribution())

    def target(self, k: int, z: torch.Tensor, betas: torch.Tensor, name: str = "z"):
        """Program :math:`\\gamma_k` scoring ``z``."""
        return annealed_target(self.path, betas[k], z, name=name)

    def proposal(self, k: int, z_prev: torch.Tensor, betas: torch.Tensor):
        """Program :math:`\\hat\\gamma_k = \\gamma_{k-1}(z_{k-1})\\,q_k(z_k \\mid z_{k-1})`."""
        z_prev = self.target(k - 1, z_prev, betas, name="z_prev")
        z = self.forward_kernels[k - 1](z_prev, name="z")
        return z_prev, z

    def extended_target(self, k: int, z: torch.Tensor, z_prev: torch.Tensor, betas):
        """Program :math:`\\check\\gamma_k = \\gamma_k(z_k)\\,r_{k-1}(z_{k-1} \\mid z_k)`."""
        self.target(k, z, betas, name="z")
        self.reverse_kernels[k - 1](z, name="z_prev", obs=z_prev)

    def kernel_parameters(self, k: int):
        """Parameters of the kernels of step ``k`` (forward q_k and reverse r_{k-1})."""
        return [*self.forward_kernels[k - 1].parameters(),
                *self.reverse_kernels[k - 1].parameters()]
