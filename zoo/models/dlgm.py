r"""Deep latent Gaussian model (DLGM): a VAE with a hierarchy of L stochastic layers.

Rezende, Mohamed and Wierstra [1] stack Gaussian layers, each a nonlinear function of the one
above plus its own noise:

.. math::

    \xi_l &\sim \mathcal{N}(0, I_{d_l}), \quad l = 1..L, \\
    h_L &= G_L\,\xi_L, \\
    h_l &= T_l(h_{l+1}) + G_l\,\xi_l, \quad l = L-1, \dots, 1, \\
    v \mid h_1 &\sim \mathrm{Bernoulli}\big(\sigma(T_0(h_1))\big)
        \quad\text{or}\quad \mathcal{N}\big(T_0(h_1), \operatorname{diag} s^2\big),

with :math:`T_l` MLPs. Marginalizing the noise gives the sample sites this program draws,

.. math::

    h_L \sim \mathcal{N}(0, G_L G_L^\top), \qquad
    h_l \mid h_{l+1} \sim \mathcal{N}\big(T_l(h_{l+1}), G_l G_l^\top\big).

**Choices made here.**

- *Site names and order.* :math:`h_l` is the site ``"z_l"``; ``z_1`` is the layer next to the
  data and ``z_L`` the top. The program samples top-down, ``z_L, ..., z_1``, then ``x``, and
  :meth:`DLGM.latent_sites` lists the sites in that same (trace) order.
- *Top layer:* :math:`G_L = I`. Only :math:`T_{L-1}` (or :math:`T_0` when :math:`L = 1`) reads
  :math:`h_L`, through an affine first layer, so :math:`W h_L + b = (W G_L)\,\xi_L + b`: any
  :math:`G_L` is absorbed into :math:`W` and fixing it loses nothing. With :math:`L = 1` the
  program is then exactly :class:`~zoo.models.vae.VAE` (same site distributions, same
  ``decoder`` module, same ``state_dict`` keys).
- *Lower layers:* ``noise="diagonal"`` (default) learns :math:`G_l = \operatorname{diag}(g_l)`,
  :math:`g_l = \operatorname{softplus}(\cdot) + 10^{-3}`, started at 1; ``noise="full"`` learns
  a lower-triangular :math:`G_l` with a positive diagonal (no loss of generality: every
  :math:`G_l G_l^\top` has such a Cholesky factor). An invertible :math:`G_l` could in principle
  be absorbed too (:math:`G_l^{-1} h_l` has noise :math:`I` and mean :math:`G_l^{-1} T_l`), but
  a *full* :math:`G_l` then turns a diagonal guide on :math:`G_l^{-1} h_l` into a correlated one
  on :math:`h_l`, so with a fixed guide family it does change the variational fit.
- The paper's Gaussian prior on the generative weights, :math:`\frac{1}{2\kappa}\lVert\theta_g
  \rVert^2`, is not part of the program (weights are point estimates); use weight decay in the
  optimizer to get its MAP effect.

The recognition model of [1] (one Gaussian per layer, diagonal plus rank-one) is the guide
``low_rank_normal``; ``diagonal_normal`` and ``householder`` serve this model unchanged, with one
head per layer.

**Keeping the top layer alive.** Trained with the plain ELBO and a guide factorized over layers,
:math:`q(z_1 \mid x)\,q(z_2 \mid x)`, the top layer of a small DLGM goes inactive (on digits: 0
of 10 units): at initialization :math:`p(z_1 \mid z_2) \approx \mathcal{N}(0, I)` already, so
the model is a VAE on :math:`z_1`, and informing :math:`z_2` costs KL at once while a factorized
guide cannot follow the posterior's dependence :math:`p(z_2 \mid z_1, x) = p(z_2 \mid z_1)`. Two
changes bring it back (``benchmarks/deep_models.py``): the bottom-up chain guide
``chain_normal``, :math:`q(z_1 \mid x)\,q(z_2 \mid z_1)` (the exact posterior's structure, as
in [2]), and KL warm-up (``zoo train --kl-warmup``, the engine's ``kl_weight`` schedule,
:mod:`zoo.schedules`; Sønderby et al. [3]). Shrinking :math:`G_1` at initialization
(``noise_init`` well below 1) does *not* help: the guide then collapses :math:`z_1` as well.

**References:**

1. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
2. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519 (two stochastic layers on MNIST: latents 100 and 50)
3. *Ladder Variational Autoencoders*, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby,
   O. Winther (2016), arXiv:1602.02282
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

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

NOISE = ("diagonal", "full")


class NoiseFactor(nn.Module):
    r"""The learned factor :math:`G_l` of one lower layer: diagonal, or lower-triangular."""

    def __init__(self, dim: int, kind: str, init: float = 1.0):
        super().__init__()
        if not init > 1e-3:
            raise ValueError(f"noise_init must be above the floor 1e-3, got {init}")
        self.kind = kind
        # softplus(raw) + 1e-3 = init: the layer starts as h_l = T_l(h_{l+1}) + init * xi_l.
        self.raw_diag = nn.Parameter(torch.full((dim,), math.log(math.expm1(init - 1e-3))))
        if kind == "full":
            self.off_diag = nn.Parameter(torch.zeros(dim, dim))

    def diag(self) -> torch.Tensor:
        """The positive diagonal of the noise factor."""
        return F.softplus(self.raw_diag) + 1e-3  # [d_l]

    def scale_tril(self) -> torch.Tensor:
        """The lower-triangular noise factor: learned entries below the diagonal, :meth:`diag` on
        it."""
        return torch.tril(self.off_diag, diagonal=-1) + torch.diag_embed(self.diag())  # [d, d]

    def distribution(self, loc: torch.Tensor):
        r""":math:`\mathcal{N}(\mathrm{loc}, G_l G_l^\top)` for ``loc`` of shape ``[..., d_l]``."""
        if self.kind == "diagonal":
            return dist.Normal(loc, self.diag()).to_event(1)
        return dist.MultivariateNormal(loc, scale_tril=self.scale_tril())


@register_model("dlgm")
class DLGM(ZooModel):
    r""":param int input_dim: pixels per image (64 for scikit-learn digits, 784 for MNIST)
    :param latent_dims: sizes :math:`(d_1, \dots, d_L)` of ``z_1`` (next to the data) up to
        ``z_L`` (the top); its length is the number of stochastic layers L
    :param hidden_dims: widths of the hidden layers of :math:`T_0`, the decoder ``z_1 -> x``
    :param transition_dims: widths of the hidden layers of each :math:`T_l`, ``z_{l+1} -> z_l``
    :param str noise: :math:`G_l` of the lower layers, ``"diagonal"`` or ``"full"``
    :param float noise_init: the diagonal of every :math:`G_l` at initialization (1: the lower
        layers start as unit-noise layers; below 1 the top layer must explain their variance)
    :param str likelihood: ``"bernoulli"`` (binary pixels) or ``"gaussian"`` (real pixels)
    :param str activation: hidden nonlinearity (``"softplus"``, ``"relu"``, ``"tanh"``)
    """

    default_guide = "low_rank_normal"

    def __init__(
        self,
        input_dim: int = 64,
        latent_dims: tuple[int, ...] = (20, 10),
        hidden_dims: tuple[int, ...] = (400,),
        transition_dims: tuple[int, ...] = (100,),
        noise: str = "diagonal",
        noise_init: float = 1.0,
        likelihood: str = "bernoulli",
        activation: str = "softplus",
    ):
        super().__init__()
        checks.count("input_dim", input_dim)
        checks.sizes("latent_dims", latent_dims, allow_empty=True)  # empty: refused below
        checks.sizes("hidden_dims", hidden_dims, allow_empty=True)
        checks.sizes("transition_dims", transition_dims, allow_empty=True)
        check_pixel_likelihood(likelihood)
        checks.choice("noise", noise, NOISE)
        latent_dims, hidden_dims = tuple(latent_dims), tuple(hidden_dims)
        transition_dims = tuple(transition_dims)
        if not latent_dims or min(latent_dims) < 1:
            raise ValueError(
                f"latent_dims must list at least one positive layer size, got {latent_dims}; "
                "e.g. latent_dims=(20,) is the VAE, (20, 10) a two-layer DLGM."
            )
        self.config = dict(
            input_dim=input_dim,
            latent_dims=latent_dims,
            hidden_dims=hidden_dims,
            transition_dims=transition_dims,
            noise=noise,
            noise_init=noise_init,
            likelihood=likelihood,
            activation=activation,
        )
        self.latent_dims = latent_dims
        self.num_layers = len(latent_dims)
        self.likelihood = likelihood
        # T_0 has the VAE's module name and layout, so DLGM(L=1) loads a VAE's state_dict.
        self.decoder = mlp([latent_dims[0], *hidden_dims, input_dim], activation)
        # transitions[l - 1] is T_l : z_{l+1} -> z_l, and noise[l - 1] is G_l, for l = 1..L-1.
        self.transitions = nn.ModuleList(
            mlp([latent_dims[l], *transition_dims, latent_dims[l - 1]], activation)
            for l in range(1, self.num_layers)
        )
        self.noise = nn.ModuleList(
            NoiseFactor(latent_dims[l - 1], noise, noise_init) for l in range(1, self.num_layers)
        )
        # As in the VAE: one learned noise scale per pixel (floored at 1e-2) for Gaussian pixels
        self.log_scale = nn.Parameter(torch.zeros(input_dim)) if likelihood == "gaussian" else None

    def latent_sites(self):
        """``z_L, ..., z_1``: top-down, the order in which :meth:`forward` samples them."""
        return tuple(
            LatentSite(f"z_{l}", "real", (self.latent_dims[l - 1],))
            for l in range(self.num_layers, 0, -1)
        )

    def check_data(self, dataset):
        check_pixels(dataset, self.likelihood)

    def observation_mean(self, trace):
        return pixel_means(trace)

    def observation_dist(self, z_1: torch.Tensor):
        """p(x | z_1) for bottom-layer codes of shape ``[..., d_1]``."""
        return pixel_distribution(self.decoder(z_1), self.likelihood, self.log_scale)

    def layer_dist(self, l: int, z_above: torch.Tensor):
        """p(z_l | z_{l+1}) = N(T_l(z_{l+1}), G_l G_l^T) for 1 <= l < L."""
        loc = self.transitions[l - 1](z_above)  # [..., d_l]
        return self.noise[l - 1].distribution(loc)

    def forward(self, x: torch.Tensor | None = None, num_data: int | None = None, batch_size=1):
        """Score a batch ``x`` of shape ``[batch, input_dim]``; with ``x=None`` draw
        ``batch_size`` images from the prior."""
        if x is None:
            x_shape = (batch_size, self.config["input_dim"])
            x_template = self.decoder[0].weight.new_empty(x_shape)  # its device and type
        else:
            x_template = x
        loc = x_template.new_zeros(self.latent_dims[-1])
        with self.data_plate(x_template, num_data):
            # h_L = xi_L (G_L = I, see the module docstring)
            z = pyro.sample(f"z_{self.num_layers}", dist.Normal(loc, 1.0).to_event(1))
            for l in range(self.num_layers - 1, 0, -1):
                z = pyro.sample(f"z_{l}", self.layer_dist(l, z))  # [batch, d_l]
            return pyro.sample("x", self.observation_dist(z), obs=x)
