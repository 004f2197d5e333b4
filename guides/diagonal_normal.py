r"""Amortized diagonal Gaussian guide (the VAE encoder), for any model whose latent sites are
local real vectors: VAE, DLGM (one head per layer), NVDM, ProdLDA's logits, CTM's logits.

.. math::

    h = \mathrm{MLP}_\phi(x), \qquad
    q_\phi(z_s \mid x) = \mathcal{N}\big(\mu_s(h), \operatorname{diag}\sigma_s(h)^2\big)
    \quad\text{for each latent site } s,

factorized over sites (Rezende et al.'s recognition model is factorized over layers too). With
``batch_norm=True`` each head is followed by a ``BatchNorm1d`` without affine scale, as AVITM does
to keep its encoder out of component collapse [2].

**References:**

1. *Auto-Encoding Variational Bayes*, D. P. Kingma, M. Welling (2013), arXiv:1312.6114
2. *Autoencoding Variational Inference for Topic Models*, A. Srivastava, C. Sutton (2017),
   arXiv:1703.01488
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from guides.base import AmortizedGuide, local_real_vector_sites
from zoo.models.base import data_plate
from zoo.models.nets import GaussianHead
from zoo.registry import register_guide


@register_guide("diagonal_normal")
class DiagonalNormalGuide(AmortizedGuide):
    """:param model: a model whose latent sites are all local real vectors
    :param hidden_dims: encoder widths
    :param batch_norm: BatchNorm on the loc and scale heads (AVITM): ``True`` without affine
        parameters, ``"shift"`` with a learned shift (as the AVITM code), ``False`` none
    """

    #: refined per data point (:meth:`local_parameters`, :mod:`zoo.infer.amortization`)
    refinable = True

    def __init__(self, model, hidden_dims=(400,), activation="softplus", dropout=0.0,
                 batch_norm=False):
        super().__init__(model, hidden_dims, activation, dropout)
        self.options["batch_norm"] = batch_norm
        self.heads = nn.ModuleDict({
            s.name: GaussianHead(self.hidden_dim, s.event_shape[0], batch_norm) for s in self.sites
        })

    @classmethod
    def why_not(cls, model):
        return local_real_vector_sites(model)

    def local_parameters(self, x: torch.Tensor) -> dict:
        """What refinement moves per data point: ``"hidden"``, the encoder's last hidden layer
        ``[batch, hidden_dim]``, from which subclasses compute their other per-point quantities
        (low-rank factors, reflection vectors), and for each site with a head a shift of its
        location and of its log-scale, ``"<site>.loc"`` and ``"<site>.log_scale"`` ``[batch,
        d]``, zero at the encoder's output, so that every diagonal Gaussian is reachable
        whatever the heads' rank."""
        h = super().hidden(x)
        shifts = {f"{name}.{part}": h.new_zeros(h.shape[0], head.loc.out_features)
                  for name, head in self.heads.items() for part in ("loc", "log_scale")}
        return {"hidden": h, **shifts}

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden layer, or the refined one inside
        :meth:`~guides.base.AmortizedGuide.using_local_parameters`."""
        if self._override is not None:
            return self._override["hidden"]
        return super().hidden(x)

    def head(self, name: str, h: torch.Tensor):
        """``(loc, scale)`` of site ``name`` from the hidden layer, shifted by the refined
        per-point shifts inside :meth:`~guides.base.AmortizedGuide.using_local_parameters`."""
        loc, scale = self.heads[name](h)
        if self._override is not None:
            loc = loc + self._override[f"{name}.loc"]
            scale = scale * self._override[f"{name}.log_scale"].exp()
        return loc, scale

    def site_dist(self, name: str, loc, scale, hidden):
        """q(z_name | x); subclasses wrap it in a flow."""
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: for every local real-vector site, the distribution of
        :meth:`site_dist` at the encoder's location and scale, in the data plate."""
        h = self.hidden(x)  # [batch, hidden_dim]
        with data_plate(self.plate_name, x, num_data):
            return {
                s.name: pyro.sample(s.name, self.site_dist(s.name, *self.head(s.name, h), h))
                for s in self.sites
            }
