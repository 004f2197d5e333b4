r"""A plain-PyTorch nested-VI sampler: the peer that ``benchmarks/nested_vi.py`` times ours against.

The same sampler as :mod:`zoo.infer.nested` (Gaussian kernels with a 50-unit ReLU layer, residual
mean and softplus scale, zero-initialized outputs; ``gamma_0 = N(0, 5^2 I)``; linear or learned
monotone schedule; systematic resampling; the ``nvi-rkl`` and ``avo`` surrogate losses of [1, 2]
with per-level backward), written with tensors only: no Pyro program, no handler, no
``pyro.sample``. It follows the "one training step" sketch of the authors' code [3].

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
2. *Improving Explorability in Variational Inference with Annealed Variational Objectives*,
   C.-W. Huang, S. Tan, A. Lacoste, A. Courville (2018), NeurIPS, arXiv:1809.01294
3. *coix* (the authors' JAX library), ``coix/loss.py`` and ``examples/anneal.py``,
   github.com/jax-ml/coix
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def normal_log_prob(x, loc, scale):  # (S, D) -> (S,)
    return (-0.5 * ((x - loc) / scale) ** 2 - torch.log(scale) - _HALF_LOG_2PI).sum(-1)


class Kernel(nn.Module):
    def __init__(self, dim=2, hidden=50):
        super().__init__()
        self.hidden, self.loc, self.scale = nn.Linear(dim, hidden), nn.Linear(hidden, dim), \
            nn.Linear(hidden, dim)
        for layer in (self.loc, self.scale):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x):  # (S, D) -> loc, scale (S, D)
        h = torch.relu(self.hidden(x))
        return x + self.loc(h), F.softplus(self.scale(h))


class PlainRingNVI(nn.Module):
    """Ring-GMM annealing with ``num_levels`` targets, in plain PyTorch."""

    def __init__(self, num_levels, learned=False, init_scale=5.0):
        super().__init__()
        self.num_levels, self.learned, self.init_scale = num_levels, learned, init_scale
        self.fwd = nn.ModuleList(Kernel() for _ in range(num_levels - 1))
        self.rev = nn.ModuleList(Kernel() for _ in range(num_levels - 1))
        self.increments = nn.Parameter(torch.zeros(num_levels - 1)) if learned else None
        angles = 2 * math.pi * torch.arange(1, 9) / 8
        self.register_buffer("locs", 10 * torch.stack([angles.sin(), angles.cos()], -1))

    def betas(self):
        if not self.learned:
            return torch.linspace(0.0, 1.0, self.num_levels)
        steps = F.softplus(self.increments).cumsum(0)
        return torch.cat([steps.new_zeros(1), steps / steps[-1]])

    def log_gamma(self, z, beta):  # (S, 2) -> (S,)
        d = ((z.unsqueeze(-2) - self.locs) ** 2).sum(-1)  # (S, 8)
        target = torch.logsumexp(-d / (2 * 0.5), -1) - math.log(2 * math.pi * 0.5)
        init = -0.5 * (z**2).sum(-1) / self.init_scale**2 - 2 * (
            math.log(self.init_scale) + _HALF_LOG_2PI)
        return (1 - beta) * init + beta * target

    def step(self, num_particles, divergence="nvi-rkl", resample=False, backward=True):
        """One sweep; returns the final log weights ``(S,)``."""
        z = self.init_scale * torch.randn(num_particles, 2)
        log_w = torch.zeros(num_particles)
        for k in range(1, self.num_levels):
            betas = self.betas()
            if resample and k > 1:
                probs = torch.softmax(log_w, 0).cumsum(0)
                probs[-1] = 1.0
                u = (torch.rand(()) + torch.arange(num_particles)) / num_particles
                idx = torch.searchsorted(probs, u, right=True).clamp(max=num_particles - 1)
                z = z[idx]
                log_w = (torch.logsumexp(log_w, 0) - math.log(num_particles)).expand(
                    num_particles).clone()
            zp = z
            loc, scale = self.fwd[k - 1](zp)
            z = loc + scale * torch.randn_like(loc)
            lq = normal_log_prob(z, loc.detach(), scale.detach())  # STL
            r_loc, r_scale = self.rev[k - 1](z)
            lr = normal_log_prob(zp, r_loc, r_scale)
            lgp = self.log_gamma(zp, betas[k - 1])
            lv = self.log_gamma(z, betas[k]) + lr - lgp - lq
            v = lv.detach()
            if divergence == "avo":
                loss = -lv.mean()
            else:
                w_prev = torch.softmax(log_w, 0)
                w = torch.softmax(log_w + v, 0)
                loss = -(w_prev * (lv + (1 + v - (w_prev * v).sum()) * lgp)).sum()
                if self.learned:
                    loss = loss + (w * self.log_gamma(z.detach(), betas[k])).sum()
            if backward:
                loss.backward()
            log_w = log_w + v
            z = z.detach()
        return log_w
