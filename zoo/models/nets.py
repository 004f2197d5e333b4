"""Small network builders and pixel likelihoods shared by models and guides."""

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


def flat_apply(module, x: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` to the last dimension of ``x`` with all leading dims (particles,
    batch) flattened into one: ``BatchNorm1d`` would read a 3-d input as ``[N, C, L]``."""
    out = module(x.reshape(-1, x.shape[-1]))
    return out.reshape(*x.shape[:-1], out.shape[-1])


class ShiftBatchNorm(nn.BatchNorm1d):
    """BatchNorm with a learned shift and no scale: TensorFlow's ``batch_norm(center=True,
    scale=False)``, which the AVITM code uses on its encoder heads (Pyro PR #2794 reports ProdLDA's
    NPMI rising from 0.276 to 0.355 with it). Without the shift the normalized heads are pinned to
    zero mean, which keeps q's scales from shrinking. That noise also keeps topics exploring: on
    the bars corpus of ``tests/test_topic_recovery.py`` the shift on the scale head alone (not on
    the loc head) made runs settle on merged bars more often under Adam with beta1 = 0.99."""

    def __init__(self, num_features: int):
        super().__init__(num_features, affine=False)
        self.shift = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        """Batch-normalize ``x`` and add the learned shift."""
        return super().forward(x) + self.shift


class GaussianHead(nn.Module):
    """``hidden -> (loc, scale)`` for one latent site; optionally batch-normalized (AVITM), with
    (``batch_norm="shift"``) or without (``batch_norm=True``) a learned shift."""

    def __init__(self, hidden_dim: int, latent_dim: int, batch_norm: bool | str = False):
        super().__init__()
        if batch_norm not in (False, True, "shift"):
            raise ValueError(f"batch_norm must be False, True or 'shift', got {batch_norm!r}")
        self.loc = nn.Linear(hidden_dim, latent_dim)
        self.raw_scale = nn.Linear(hidden_dim, latent_dim)
        # Start near q = N(., 0.5^2): large initial variances make the first steps noisy.
        nn.init.zeros_(self.raw_scale.weight)
        nn.init.constant_(self.raw_scale.bias, -0.5)

        def norm():
            if batch_norm == "shift":
                return ShiftBatchNorm(latent_dim)
            return nn.BatchNorm1d(latent_dim, affine=False) if batch_norm else nn.Identity()

        self.loc_norm, self.scale_norm = norm(), norm()

    def forward(self, h):
        """``(loc, scale)`` of the site from the hidden layer ``h``."""
        loc = self.loc_norm(self.loc(h))
        scale = F.softplus(self.scale_norm(self.raw_scale(h))) + 1e-4
        return loc, scale


PIXEL_LIKELIHOODS = ("bernoulli", "gaussian")


def check_pixel_likelihood(likelihood: str) -> None:
    """Refuse a pixel likelihood other than ``"bernoulli"`` or ``"gaussian"``."""
    if likelihood not in PIXEL_LIKELIHOODS:
        raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")


def pixel_distribution(out: torch.Tensor, likelihood: str, log_scale: torch.Tensor | None = None):
    """p(x | z) over flattened pixels from a decoder's output ``[..., D]``: Bernoulli with
    ``out`` as logits, or Normal with ``out`` as mean and one learned scale per pixel, floored at
    0.01 (constant pixels, like the border of digits, would otherwise drive their scale to 0 and
    the likelihood to infinity)."""
    if likelihood == "bernoulli":
        return dist.Bernoulli(logits=out).to_event(1)
    return dist.Normal(out, 1e-2 + F.softplus(log_scale)).to_event(1)


def check_pixels(dataset, likelihood: str) -> None:
    """Refuse data that a pixel likelihood cannot score: anything but images, and real-valued
    pixels for the Bernoulli likelihood (unless the split binarizes them itself)."""
    if dataset.kind != "image":
        raise ValueError(f"{dataset.name}: this model draws images, but the data are "
                         f"{dataset.kind} ({dataset.num_features} features); pass image data "
                         "(digits, an MNIST folder, a .npy array).")
    if likelihood != "bernoulli" or dataset.train.binarize:
        return
    x = dataset.train.batch(torch.arange(min(len(dataset.train), 256)))
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{dataset.name}: the Bernoulli likelihood needs binary pixels, but "
                         "these are real-valued. Binarize them (--data-opt binarize=true) or use "
                         "--model-opt likelihood=gaussian.")


def pixel_means(trace, site: str = "x") -> torch.Tensor:
    """The mean image of ``p(x | z)`` at a trace's latents: the mean of the observation
    site's (``Independent``) distribution."""
    return trace.nodes[site]["fn"].base_dist.mean
