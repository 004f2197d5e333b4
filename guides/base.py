r"""Shared pieces of amortized guides: what a guide reads from its model, and the encoder trunk.

A guide is built as ``Guide(model, **options)`` and its ``forward`` takes exactly the model's
arguments (the rule Pyro's ``AutoGuide`` states). It keeps only a description of the model's
latent sites, never a reference to the model itself, so the guide's ``state_dict`` holds the
guide's parameters alone and a checkpoint can store model and guide separately.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.models.base import LocalParamsModule, encoder_input
from zoo.models.nets import mlp


class AmortizedGuide(LocalParamsModule):
    """Base of guides whose parameters are computed from ``x`` by an encoder network.

    :param model: the :class:`~zoo.models.base.ZooModel` to approximate the posterior of
    :param hidden_dims: widths of the encoder's hidden layers
    :param str activation: hidden nonlinearity
    :param float dropout: dropout on the last hidden layer (AVITM uses 0.2 on its encoder)
    """

    def __init__(self, model, hidden_dims=(400,), activation="softplus", dropout=0.0):
        super().__init__()
        reason = type(self).why_not(model)
        if reason is not None:
            raise ValueError(f"{type(self).__name__} does not fit {model.registry_name}: {reason}")
        hidden_dims = tuple(hidden_dims)
        self.options = dict(hidden_dims=hidden_dims, activation=activation, dropout=dropout)
        self.sites = tuple(model.latent_sites())
        self.plate_name = model.plate_name
        self.encoder_input = model.encoder_input
        self.hidden_dim = hidden_dims[-1]
        layers = [mlp([model.input_dim, *hidden_dims], activation, final_activation=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.trunk = nn.Sequential(*layers)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer of the encoder, ``[batch, hidden_dim]``."""
        return self.trunk(encoder_input(self.encoder_input, x))

    @classmethod
    def why_not(cls, model) -> str | None:
        raise NotImplementedError


def local_real_vector_sites(model) -> str | None:
    """``None`` when every latent site of ``model`` is a local real vector, else the reason."""
    if getattr(model, "graph_input", False):
        return "the model's data points are graphs [batch, V, V], not flat vectors."
    sites = model.latent_sites()
    if not sites:
        return "the model has no latent sites."
    for s in sites:
        if not s.local:
            return f"latent site '{s.name}' is global; this guide amortizes local latents only."
        if s.support != "real" or len(s.event_shape) != 1:
            return (
                f"latent site '{s.name}' has support '{s.support}' and event shape "
                f"{s.event_shape}; this guide needs real vectors."
            )
    return None
