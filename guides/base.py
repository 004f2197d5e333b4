r"""The contract every guide family follows, and the encoder trunk amortized guides share.

A guide is built as ``Guide(model, **options)`` and its ``forward`` takes exactly the model's
arguments (the rule Pyro's ``AutoGuide`` states). It reads what it needs from the model at
construction (the latent sites, the plate name, defaults) and keeps no reference to the model,
so the guide's ``state_dict`` holds the guide's parameters alone and a checkpoint stores model
and guide separately. Everything the engine, the evaluation code and the CLI may ask of a guide
is declared on :class:`ZooGuide` with its default; nothing probes a guide with ``hasattr``.

Whether a family fits a model is its class method ``why_not(model)``: ``None`` when it fits,
else a sentence saying why not, which :func:`zoo.registry.get_guide` shows with the names of the
families that do fit.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import nn

from zoo.models import checks
from zoo.models.base import ZooModule, encoder_input
from zoo.models.nets import mlp


class ZooGuide(ZooModule):
    """Base class of every registered guide family: the contract in one place.

    Subclasses implement ``why_not`` and ``forward`` and keep their constructor options in
    ``self.options`` (saved to a run's ``config.json``).
    """

    #: in training, each data point's local posterior is found by this many closed-form updates
    #: of the model (:meth:`~zoo.models.base.ZooModel.local_update`) and the encoder is
    #: regressed onto it (semi-amortized training, :mod:`zoo.infer.semi_amortized`); 0: the
    #: encoder's output is used as it is
    local_steps: int = 0
    #: how the global sites learn: ``"gradient"`` (the optimizer follows the ELBO's gradient) or
    #: ``"natural"`` (natural-gradient steps from the model's closed-form
    #: :meth:`~zoo.models.base.ZooModel.global_update`, :mod:`zoo.models.natural_steps`)
    global_step: str = "gradient"
    #: exposes its local parameters: :meth:`local_parameters` and
    #: :meth:`~guides.base.ZooGuide.using_local_parameters` (refinement of held-out data)
    refinable: ClassVar[bool] = False
    #: its local sites are Dirichlets with :meth:`local_concentration` and
    #: :meth:`raw_from_concentration`, which a conjugate model's E-step can refine
    dirichlet_locals: ClassVar[bool] = False

    @classmethod
    def why_not(cls, model) -> str | None:
        """``None`` when this family fits ``model``, else the reason it does not."""
        raise NotImplementedError

    def posterior_mean(self, name: str) -> torch.Tensor:
        """:math:`\\mathbb{E}_q` of the global site ``name`` (LDA's topics)."""
        raise ValueError(f"guide '{self.registry_name}' has no global site {name!r} whose "
                         "posterior mean it could report.")

    def local_parameters(self, x: torch.Tensor) -> dict:
        """Raw (unconstrained) local parameters per local site for ``x``, for
        :attr:`refinable` guides."""
        raise NotImplementedError(f"guide '{self.registry_name}' keeps its local parameters "
                                  "to itself.")

    @contextlib.contextmanager
    def using_local_parameters(self, raw: dict):
        """Within this context ``forward`` uses ``raw`` (the layout of
        :meth:`local_parameters`) instead of its encoder's output."""
        raise NotImplementedError(f"guide '{self.registry_name}' keeps its local parameters "
                                  "to itself.")
        yield  # pragma: no cover

    def local_concentration(self, raw: torch.Tensor) -> torch.Tensor:
        """Dirichlet concentrations ``[batch, K]`` of raw local parameters, for
        :attr:`dirichlet_locals` guides."""
        raise NotImplementedError(f"guide '{self.registry_name}' has no Dirichlet locals.")

    def raw_from_concentration(self, concentration: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`local_concentration`."""
        raise NotImplementedError(f"guide '{self.registry_name}' has no Dirichlet locals.")


class AmortizedGuide(ZooGuide):
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
        hidden_dims = checks.sizes("hidden_dims", hidden_dims)
        checks.probability("dropout", dropout)
        self.options = dict(hidden_dims=hidden_dims, activation=activation, dropout=dropout)
        self.sites = tuple(model.latent_sites())
        self.plate_name = model.plate_name
        self.encoder_input = model.encoder_input
        self.hidden_dim = hidden_dims[-1]
        layers = [mlp([model.input_dim, *hidden_dims], activation, final_activation=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.trunk = nn.Sequential(*layers)
        self._override = None  # local parameters that replace the encoder's (see below)

    @contextlib.contextmanager
    def using_local_parameters(self, raw: dict):
        """Within this context ``forward`` ignores the encoder and uses ``raw`` (same layout as
        :meth:`local_parameters`), e.g. after refining them per data point
        (:mod:`zoo.infer.amortization`)."""
        self._override = raw
        try:
            yield self
        finally:
            self._override = None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer of the encoder, ``[batch, hidden_dim]``."""
        return self.trunk(encoder_input(self.encoder_input, x))


def local_real_vector_sites(model) -> str | None:
    """``None`` when every latent site of ``model`` is a local real vector, else the reason."""
    if model.graph_input:
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
