r"""Variational autoencoder: a deep latent Gaussian model with one stochastic layer.

.. math::

    z_n &\sim \mathcal{N}(0, I_{d_z}), \\
    x_n \mid z_n &\sim \mathrm{Bernoulli}\big(\sigma(f_\theta(z_n))\big)
        \quad\text{or}\quad \mathcal{N}\big(f_\theta(z_n), \operatorname{diag} s^2\big),

for :math:`n = 1..N`, with :math:`f_\theta` an MLP decoder. The model is only the generative
program; the approximate posterior :math:`q_\phi(z \mid x)` is a separate, swappable guide
(``diagonal_normal``, ``householder``, ...), unlike Pyro's own VAE example where model and guide
are methods of one class.

**References:**

1. *Auto-Encoding Variational Bayes*, D. P. Kingma, M. Welling (2013), arXiv:1312.6114
2. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.models import checks
from zoo.models.base import LatentSite, ZooModel
from zoo.models.nets import (
    check_pixel_likelihood,
    check_pixels,
    mlp,
    pixel_distribution,
    pixel_means,
)
from zoo.registry import register_model


@register_model("vae")
class VAE(ZooModel):
    """:param int input_dim: pixels per image (64 for scikit-learn digits, 784 for MNIST)
    :param int latent_dim: size of ``z``
    :param hidden_dims: widths of the decoder's hidden layers
    :param str likelihood: ``"bernoulli"`` (binary pixels) or ``"gaussian"`` (real pixels)
    :param str activation: hidden nonlinearity (``"softplus"``, ``"relu"``, ``"tanh"``)
    """

    default_guide = "diagonal_normal"

    def __init__(
        self,
        input_dim: int = 64,
        latent_dim: int = 20,
        hidden_dims: tuple[int, ...] = (400,),
        likelihood: str = "bernoulli",
        activation: str = "softplus",
    ):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.count("latent_dim", latent_dim)
        hidden_dims = checks.sizes("hidden_dims", hidden_dims, allow_empty=True)
        check_pixel_likelihood(likelihood)
        self.config = dict(
            input_dim=input_dim,
            latent_dim=latent_dim,
            hidden_dims=hidden_dims,
            likelihood=likelihood,
            activation=activation,
        )
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.decoder = mlp([latent_dim, *hidden_dims, input_dim], activation)
        # one learned scale per pixel for Gaussian pixels; none for Bernoulli ones
        self.log_scale = nn.Parameter(torch.zeros(input_dim)) if likelihood == "gaussian" else None

    def latent_sites(self):
        return (LatentSite("z", "real", (self.latent_dim,)),)

    def check_data(self, dataset):
        check_pixels(dataset, self.likelihood)

    def observation_mean(self, trace):
        return pixel_means(trace)

    def observation_dist(self, z: torch.Tensor):
        """p(x | z) for latent codes ``z`` of shape ``[..., latent_dim]``."""
        return pixel_distribution(self.decoder(z), self.likelihood, self.log_scale)

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size=1):
        """Score a batch ``x`` of shape ``[batch, input_dim]``; with ``x=None`` draw
        ``batch_size`` images from the prior."""
        if x is None:
            x_shape = (batch_size, self.config["input_dim"])
            x_template = self.decoder[0].weight.new_empty(x_shape)  # its device and type
        else:
            x_template = x
        loc = x_template.new_zeros(self.latent_dim)
        with self.data_plate(x_template, num_data):
            z = pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))  # [batch, latent_dim]
            return pyro.sample("x", self.observation_dist(z), obs=x)
