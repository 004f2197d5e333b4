r"""What the two simplex guides (``dirichlet``, ``logistic_normal``) share: an encoder head per
local site, learned parameters per global site, and the hook for semi-amortized refinement.

A model fits when every latent site is a simplex (local ones vectors, at least one local;
global ones of any shape, leading dimensions in plates: LDA's topics ``[K, V]`` live in the
``"topics"`` plate that :attr:`~zoo.models.base.LatentSite.plate` names). Local parameters are
the encoder's raw outputs (:meth:`SimplexGuide.local_parameters`); within
:meth:`~guides.base.AmortizedGuide.using_local_parameters` ``forward`` uses given ones instead,
which is how held-out documents are refined (:func:`zoo.topics.refine_local_parameters`) and how
semi-amortized training hands the guide its E-step posteriors (:mod:`zoo.infer.semi_amortized`).
"""

from __future__ import annotations

import contextlib

import pyro
import torch
from torch import nn

from guides.base import AmortizedGuide
from zoo.models.base import data_plate


def simplex_sites(model) -> str | None:
    """``None`` when every latent site of ``model`` is a simplex (local ones vectors, at least
    one local), else the reason."""
    sites = model.latent_sites()
    if not any(s.local for s in sites):
        return "the model has no local latent site for an encoder to amortize."
    for s in sites:
        if s.support != "simplex":
            return (f"latent site '{s.name}' has support '{s.support}'; this guide needs "
                    "simplex-valued sites.")
        if s.local and len(s.event_shape) != 1:
            return f"local site '{s.name}' has event shape {s.event_shape}; expected a vector."
    return None


class SimplexGuide(AmortizedGuide):
    """Shared machinery: an encoder head per local site, learned parameters per global site.
    Subclasses define ``local_dim``, ``mean_dim``, ``init_head``, ``local_dist``, ``init_global``,
    ``global_dist`` and ``posterior_mean``."""

    refinable = True

    def __init__(self, model, hidden_dims=(100, 100), activation="softplus", dropout=0.0,
                 batch_norm=False, global_step_scale=1.0):
        super().__init__(model, hidden_dims, activation, dropout)
        self.options.update(batch_norm=batch_norm, global_step_scale=global_step_scale)
        # Global parameters are stored divided by this factor and used multiplied by it, so
        # an optimizer's step moves them global_step_scale times as far as an encoder weight:
        # a per-parameter learning rate that any torch optimizer honours.
        self.global_step_scale = float(global_step_scale)
        self.local_sites = tuple(s for s in self.sites if s.local)
        self.global_sites = tuple(s for s in self.sites if not s.local)
        self.global_plate_names = {s.name: s.plate or f"{s.name}_plate"
                                   for s in self.global_sites}
        self.heads = nn.ModuleDict(
            {s.name: nn.Linear(self.hidden_dim, self.local_dim(s.event_shape[0]))
             for s in self.local_sites})
        for head in self.heads.values():
            self.init_head(head)
        # BatchNorm (no affine) on the location part of each head, as AVITM normalizes its
        # encoder heads: every topic's logit varies across the documents of a batch, so the
        # encoder cannot send all documents to the same proportions (component collapse).
        # ``batch_norm="affine"`` learns a scale and shift per coordinate after the
        # normalization, so the spread of the documents' locations is learned, not fixed at 1.
        if batch_norm not in (False, True, "affine"):
            raise ValueError(f"batch_norm must be False, True or 'affine', got {batch_norm!r}")
        self.norms = nn.ModuleDict(
            {s.name: nn.BatchNorm1d(self.mean_dim(s.event_shape[0]),
                                    affine=batch_norm == "affine")
             for s in self.local_sites} if batch_norm else {})
        self.globals = nn.ParameterDict()
        for s in self.global_sites:
            for key, value in self.init_global(s.event_shape).items():
                self.globals[f"{s.name}__{key}"] = nn.Parameter(value / self.global_step_scale)

    @classmethod
    def why_not(cls, model):
        return simplex_sites(model)

    def global_params(self, name: str) -> dict:
        """The mean-field parameters of global site ``name``, by their short names, times
        ``global_step_scale``."""
        prefix = f"{name}__"
        return {k[len(prefix):]: self.global_step_scale * v
                for k, v in self.globals.items() if k.startswith(prefix)}

    def local_parameters(self, x: torch.Tensor) -> dict:
        """Raw (unconstrained) local parameters per local site, ``[batch, local_dim]``: the
        encoder's outputs for ``x``, what ``forward`` uses."""
        return self.encoder_parameters(x)

    def encoder_parameters(self, x: torch.Tensor) -> dict:
        """Raw (unconstrained) encoder outputs per local site, ``[batch, local_dim]``."""
        h = self.hidden(x)  # [batch, hidden_dim]
        raw = {s.name: self.heads[s.name](h) for s in self.local_sites}
        for name, norm in self.norms.items():
            m = norm.num_features
            raw[name] = torch.cat([norm(raw[name][..., :m]), raw[name][..., m:]], -1)
        return raw

    def forward(self, x: torch.Tensor, num_data: int | None = None, **kwargs):
        """The guide program: the mean-field q of every global simplex site (in its plates), then
        the amortized q of every local one, in the data plate."""
        out = {}
        for s in self.global_sites:
            # every leading dimension of a global site is a plate (LDA: the K topics)
            with contextlib.ExitStack() as stack:
                lead = s.event_shape[:-1]
                for i, size in enumerate(lead):
                    name = self.global_plate_names[s.name] + ("" if i == 0 else f"_{i}")
                    stack.enter_context(pyro.plate(name, size, dim=i - len(lead)))
                out[s.name] = pyro.sample(s.name, self.global_dist(s.name))  # [*lead, D]
        raw = self._override if self._override is not None else self.encoder_parameters(x)
        with data_plate(self.plate_name, x, num_data):
            for s in self.local_sites:
                out[s.name] = pyro.sample(s.name, self.local_dist(raw[s.name]))  # [batch, D]
        return out
