"""Small network builders shared by models and guides."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def mlp(widths, activation: str = "softplus", final_activation: bool = False) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear`` through ``widths`` (input first, output last)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2 or final_activation:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class GaussianHead(nn.Module):
    """``hidden -> (loc, scale)`` for one latent site."""

    def __init__(self, hidden_dim: int, latent_dim: int, batch_norm: bool = False):
        super().__init__()
        self.loc = nn.Linear(hidden_dim, latent_dim)
        self.raw_scale = nn.Linear(hidden_dim, latent_dim)
        # Start near q = N(., 0.5^2): large initial variances make the first steps noisy.
        nn.init.zeros_(self.raw_scale.weight)
        nn.init.constant_(self.raw_scale.bias, -0.5)
        self.loc_norm = nn.BatchNorm1d(latent_dim, affine=False) if batch_norm else nn.Identity()
        self.scale_norm = nn.BatchNorm1d(latent_dim, affine=False) if batch_norm else nn.Identity()

    def forward(self, h):
        loc = self.loc_norm(self.loc(h))
        scale = F.softplus(self.scale_norm(self.raw_scale(h))) + 1e-4
        return loc, scale


def pixel_distribution(out: torch.Tensor, likelihood: str, log_scale: torch.Tensor | None = None):
    """p(x | z) over flattened pixels from a decoder's output ``[..., D]``: Bernoulli with
    ``out`` as logits, or Normal with ``out`` as mean and one learned scale per pixel, floored at
    0.01 (constant pixels, like the border of digits, would otherwise drive their scale to 0 and
    the likelihood to infinity)."""
    if likelihood == "bernoulli":
        return dist.Bernoulli(logits=out).to_event(1)
    return dist.Normal(out, 1e-2 + F.softplus(log_scale)).to_event(1)
