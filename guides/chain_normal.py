r"""Amortized Gaussian guide that follows a layered model's chain bottom-up: the site next to
the data is encoded from :math:`x`, every site above it from the sample just drawn below it.

For a model that lists its latent sites top-down, :math:`z_L, \dots, z_1` (a DLGM),

.. math::

    q_\phi(z_1, \dots, z_L \mid x) = \mathcal{N}\big(z_1; \mu_1(x), \operatorname{diag}
        \sigma_1(x)^2\big) \prod_{l=2}^{L} \mathcal{N}\big(z_l; \mu_l(z_{l-1}),
        \operatorname{diag} \sigma_l(z_{l-1})^2\big).

**Why this structure.** In a DLGM :math:`x` depends on the latents through :math:`z_1` only, so
the exact posterior factorizes the same way:
:math:`p(z_l \mid z_{l-1}, \dots, z_1, x) = p(z_l \mid z_{l-1})`. The guide can therefore match
the posterior's dependence between layers, which a guide factorized over layers,
:math:`\prod_l q(z_l \mid x)` (Rezende et al.'s recognition model [1], ``diagonal_normal``,
``low_rank_normal``), cannot: there :math:`q(z_2 \mid x)` must cover
:math:`p(z_2 \mid z_1)` for every :math:`z_1` the guide may draw, and the KL of the mismatch is
paid on every image, which pushes the top layer to its prior (no active units). Burda et al.'s
two-layer models [2] (latents 100 and 50) use this bottom-up chain, ``x -> z_1 -> z_2``. With
one latent site it is exactly ``diagonal_normal``.

**References:**

1. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
2. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from guides.diagonal_normal import DiagonalNormalGuide
from zoo.models import checks
from zoo.models.base import data_plate
from zoo.models.nets import GaussianHead, mlp
from zoo.registry import register_guide


@register_guide("chain_normal")
class ChainNormalGuide(DiagonalNormalGuide):
    """:param model: a model whose latent sites are all local real vectors, listed top-down
        (the last one is the site next to the data)
    :param hidden_dims: encoder widths, ``x -> z_1``
    :param link_dims: widths of each upward link, ``z_{l-1} -> z_l`` (IWAE [2]: two of 100)

    Other options as :class:`~guides.diagonal_normal.DiagonalNormalGuide`; ``batch_norm``
    applies to the bottom site's head only.
    """

    def __init__(self, model, hidden_dims=(400,), link_dims=(100,), activation="softplus",
                 dropout=0.0, batch_norm=False):
        super().__init__(model, hidden_dims, activation, dropout, batch_norm)
        link_dims = checks.sizes("link_dims", link_dims)
        self.options["link_dims"] = link_dims
        # Bottom-up: order[0] is encoded from x, order[i] from the sample of order[i - 1].
        self.order = tuple(reversed(self.sites))
        self.links = nn.ModuleDict()
        for below, above in zip(self.order[:-1], self.order[1:]):
            trunk = mlp([below.event_shape[0], *link_dims], activation, final_activation=True)
            head = GaussianHead(link_dims[-1], above.event_shape[0])
            self.links[above.name] = nn.Sequential(trunk, head)
            del self.heads[above.name]  # its (loc, scale) come from the link, not from x

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: q(z_1 | x) from the encoder, then each layer above from the one below,
        q(z_{l+1} | z_l), all diagonal Gaussians in the data plate."""
        bottom = self.order[0].name
        loc, scale = self.head(bottom, self.hidden(x))  # [batch, d_1] each
        with data_plate(self.plate_name, x, num_data):
            z = {bottom: pyro.sample(bottom, dist.Normal(loc, scale).to_event(1))}
            for below, above in zip(self.order[:-1], self.order[1:]):
                loc, scale = self.links[above.name](z[below.name])  # [..., d_above]
                z[above.name] = pyro.sample(above.name, dist.Normal(loc, scale).to_event(1))
            return z
