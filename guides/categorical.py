r"""Amortized categorical guide for models whose latent sites are local categorical variables
(the Gaussian mixture's assignment, a sigmoid belief net's units one at a time).

.. math::

    h = \mathrm{MLP}_\phi(x), \qquad
    q_\phi(c_s \mid x) = \mathrm{Categorical}\big(\mathrm{softmax}(A_s h + b_s)\big)
    \quad\text{for each latent site } s.

A categorical sample has no pathwise derivative, so ``Trace_ELBO`` and ``TraceGraph_ELBO``
differentiate it with the score function [1]; ``enumerate="parallel"`` marks the sites for
``TraceEnum_ELBO``, which sums over the C values exactly instead [2].

**References:**

1. *Neural Variational Inference and Learning in Belief Networks*, A. Mnih, K. Gregor (2014),
   arXiv:1402.0030
2. Pyro tutorial *Inference with Discrete Latent Variables* (``enumeration.ipynb``)
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from guides.base import AmortizedGuide
from zoo.models.base import data_plate
from zoo.registry import register_guide


@register_guide("categorical")
class CategoricalGuide(AmortizedGuide):
    """:param model: a model whose latent sites are all local categorical sites
    :param hidden_dims: encoder widths
    :param str enumerate: ``None`` (sample) or ``"parallel"`` (enumerate under TraceEnum_ELBO)
    """

    def __init__(self, model, hidden_dims=(64,), activation="softplus", dropout=0.0,
                 enumerate: str | None = None):
        super().__init__(model, hidden_dims, activation, dropout)
        if enumerate not in (None, "parallel", "sequential"):
            raise ValueError(
                f"enumerate must be None, 'parallel' or 'sequential', got {enumerate!r}"
            )
        self.options["enumerate"] = enumerate
        self.heads = nn.ModuleDict(
            {s.name: nn.Linear(self.hidden_dim, s.num_categories) for s in self.sites}
        )

    @classmethod
    def why_not(cls, model):
        sites = model.latent_sites()
        if not sites:
            return "the model has no latent sites."
        for s in sites:
            if s.support != "categorical":
                return f"latent site '{s.name}' has support '{s.support}'; this guide needs " \
                       "categorical sites."
            if not s.local:
                return f"latent site '{s.name}' is global; this guide amortizes local latents."
        return None

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: an amortized categorical q(c | x) for every discrete local site, in
        the data plate (enumerated when ``enumerate`` is set)."""
        h = self.hidden(x)  # [batch, hidden_dim]
        infer = {"enumerate": self.options["enumerate"]} if self.options["enumerate"] else {}
        with data_plate(self.plate_name, x, num_data):
            return {
                s.name: pyro.sample(s.name, dist.Categorical(logits=self.heads[s.name](h)),
                                    infer=dict(infer))
                for s in self.sites
            }
