r"""The contract every zoo model follows, so that guides and objectives can be swapped on it.

A zoo model is a :class:`~pyro.nn.PyroModule` whose ``forward(x, num_data=None)`` is the
generative program conditioned on a batch ``x``. It declares its latent sites once
(:meth:`ZooModel.latent_sites`): name, support, event shape and whether the site is *local* (one
per data point, inside the data plate) or *global*. Guide families read these declarations to
decide whether they fit; ``tests/test_registry.py`` checks the declarations against a real trace.

Minibatching: local sites live in :func:`data_plate`, a ``pyro.plate`` of size ``num_data`` with
the batch as its subsample, so every local log-density is scaled by ``num_data / batch_size``
and a minibatch ELBO is an unbiased estimate of the full-data ELBO. Global sites stay outside it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pyro
import torch
from pyro.nn import PyroModule

SUPPORTS = ("real", "simplex", "positive")


@dataclass(frozen=True)
class LatentSite:
    """What a guide needs to know about one latent sample site of a model."""

    name: str
    support: str  # one of SUPPORTS
    event_shape: tuple[int, ...]
    local: bool = True  # one value per data point (inside the data plate), or global

    def __post_init__(self):
        if self.support not in SUPPORTS:
            raise ValueError(f"LatentSite {self.name!r}: support must be one of {SUPPORTS}")


def data_plate(name: str, x: torch.Tensor, num_data: int | None = None) -> pyro.plate:
    """The plate over data points, with ``x`` as the subsample of a dataset of ``num_data``.

    Model and guide both call this with the same arguments, so their plates agree.
    """
    batch_size = x.shape[0]
    size = batch_size if num_data is None else int(num_data)
    return pyro.plate(name, size=size, subsample=_positions(batch_size, x.device))


@functools.lru_cache(maxsize=64)
def _positions(batch_size: int, device: torch.device) -> torch.Tensor:
    # The subsample's indices are never read, only its length; one tensor per batch size
    # spares an allocation in model and guide on every step.
    return torch.arange(batch_size, device=device)


class LocalParamsModule(PyroModule):
    """A ``PyroModule`` that skips Pyro's per-access parameter announcements when parameters
    are module-local.

    On every attribute access of a plain ``torch.nn`` submodule, ``PyroModule.__getattr__``
    emits one ``param`` effect per parameter of that submodule, so that the global param store
    and ``poutine.trace(param_only=True)`` can see them (about 0.3 ms per access for an MLP, a
    quarter of a VAE step's time on 2 cores). Under ``pyro.settings.set(module_local_params=True)``
    the engine takes parameters from the modules themselves, so we return the submodule directly.
    In global param-store mode the behaviour is Pyro's, unchanged.
    """

    def __getattr__(self, name):
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules and _MODULE_LOCAL_PARAMS():
            module = modules[name]
            if not isinstance(module, PyroModule):
                return module
        return super().__getattr__(name)


def _MODULE_LOCAL_PARAMS() -> bool:
    # pyro.settings.get() imports the owning module on every call; read the flag directly.
    return pyro.nn.module._MODULE_LOCAL_PARAMS


class ZooModel(LocalParamsModule):
    """Base class of every registered model.

    Subclasses set ``default_guide``, implement ``latent_sites`` and ``forward``, and keep their
    constructor keyword arguments in ``self.config`` (saved to a run's ``config.json`` so that
    ``get_model(name, **config)`` rebuilds the same architecture).
    """

    registry_name: str = "?"
    default_guide: str = "diagonal_normal"
    plate_name: str = "data"
    #: number of nested plates in the model (the data plate, plus e.g. LDA's words plate)
    max_plate_nesting: int = 1
    #: how amortized guides should preprocess ``x`` before their encoder ("identity", "log1p")
    encoder_input: str = "identity"

    def latent_sites(self) -> tuple[LatentSite, ...]:
        raise NotImplementedError

    @property
    def input_dim(self) -> int:
        """Size of one flattened observation (pixels, vocabulary words)."""
        return self.config["input_dim"]

    @classmethod
    def data_config(cls, dataset) -> dict:
        """Constructor arguments fixed by the data (its dimension), used by the CLI."""
        return {"input_dim": dataset.num_features}

    @classmethod
    def prepare_data(cls, dataset):
        """The dataset as this model consumes it; most models take it as loaded (GraphBTM turns
        documents into mini-corpus biterm graphs)."""
        return dataset

    def data_plate(self, x: torch.Tensor, num_data: int | None = None) -> pyro.plate:
        return data_plate(self.plate_name, x, num_data)

    @torch.no_grad()
    def example_batch(self, batch_size: int = 4) -> torch.Tensor:
        """A batch of observations drawn from the model's prior (used by the registry tests to
        exercise every (model, guide) pair). Models whose ``forward(None)`` cannot sample
        override this."""
        return self(None, batch_size=batch_size)


def encoder_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    """Preprocess observations for an encoder: raw values, or log(1 + counts) for word counts
    (it tames the heavy tail of document lengths; NVDM and AVITM feed counts, many reimplementations
    use log1p)."""
    if kind == "identity":
        return x
    if kind == "log1p":
        return torch.log1p(x)
    raise ValueError(f"Unknown encoder_input {kind!r}; expected 'identity' or 'log1p'.")
