r"""The contract every zoo model follows, so that guides, objectives and the CLI can be swapped
on it. Everything a model may provide is declared here, with its default; the guides, the
engine and the CLI call these hooks and never probe a model with ``hasattr``.

A zoo model is a :class:`~pyro.nn.PyroModule` whose ``forward(x, num_data=None)`` is the
generative program conditioned on a batch ``x``. It declares its latent sites once
(:meth:`ZooModel.latent_sites`): name, support, event shape and whether the site is *local* (one
per data point, inside the data plate) or *global*. Guide families read these declarations to
decide whether they fit; ``tests/test_registry.py`` checks them against a real trace.

Minibatching: local sites live in :func:`data_plate`, a ``pyro.plate`` of size ``num_data`` with
the batch as its subsample, so every local log-density is scaled by ``num_data / batch_size``
and a minibatch ELBO is an unbiased estimate of the full-data ELBO. Global sites stay outside it.

The smallest model (a tutorial's, ``README.md`` "Adding a model or guide" has the full story):

    >>> import pyro.distributions as dist
    >>> class Toy(ZooModel):
    ...     def __init__(self, input_dim=3):
    ...         super().__init__()
    ...         self.config = dict(input_dim=input_dim)
    ...     def latent_sites(self):
    ...         return (LatentSite("z", "real", (2,)),)
    ...     def forward(self, x=None, num_data=None, batch_size=1):
    ...         x_template = torch.zeros(batch_size, 3) if x is None else x
    ...         with self.data_plate(x_template, num_data):
    ...             z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    ...             loc = z.sum(-1, keepdim=True).expand(*z.shape[:-1], 3)
    ...             return pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)
    >>> Toy().example_batch(4).shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import ClassVar

import pyro
import torch
from pyro.nn import PyroModule

SUPPORTS = ("real", "simplex", "positive")


@dataclass(frozen=True)
class LatentSite:
    """What a guide needs to know about one latent sample site of a model.

    :ivar str name: the sample site's name
    :ivar str support: one of ``SUPPORTS`` (or ``"categorical"``, see
        :class:`~zoo.models.mixture.CategoricalSite`)
    :ivar tuple event_shape: the shape of one value
    :ivar bool local: one value per data point (inside the data plate), or global
    :ivar str plate: for a global site whose leading dimensions are plates (LDA's K topics), the
        name of the plate of its first dimension (default ``"<name>_plate"``)
    """

    name: str
    support: str
    event_shape: tuple[int, ...]
    local: bool = True
    plate: str | None = None

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


class ZooModule(LocalParamsModule):
    """What models and guides share: a registry name and the quantities the engine's schedules
    may set (:mod:`zoo.schedules`)."""

    registry_name: str = "?"
    #: names of quantities (0-d buffers) that an engine schedule may set, see :meth:`set_annealed`
    annealed: ClassVar[tuple[str, ...]] = ()

    def default_schedules(self) -> dict:
        """``{name: schedule}`` the engine applies to this module unless told otherwise (a
        schedule maps :class:`zoo.schedules.Progress` to a number); none by default."""
        return {}

    def annealed_state(self) -> dict:
        """``{name: value}`` of every annealed quantity, as floats."""
        return {name: float(getattr(self, name)) for name in self.annealed}

    def set_annealed(self, name: str, value: float) -> None:
        """Set the annealed quantity ``name`` (one of :attr:`annealed`) to ``value``."""
        if name not in self.annealed:
            raise ValueError(f"{self.registry_name} has no annealed quantity {name!r}; it has "
                             f"{', '.join(self.annealed) or 'none'}.")
        buffer = getattr(self, name)
        buffer.fill_(value if buffer.dtype != torch.bool else bool(value))


class ZooModel(ZooModule):
    """Base class of every registered model: the contract in one place.

    Subclasses implement :meth:`latent_sites` and ``forward``, set :attr:`default_guide`, and
    keep their constructor keyword arguments in ``self.config`` (saved to a run's
    ``config.json`` so that ``get_model(name, **config)`` rebuilds the same architecture).
    Everything else below has a default that fits most models.
    """

    # --- how to train it ---------------------------------------------------------------------
    #: the guide family ``zoo train`` uses when none is named
    default_guide: ClassVar[str] = "diagonal_normal"
    #: options every guide built for this model gets unless told otherwise (AVITM's encoder)
    default_guide_options: ClassVar[dict] = {}
    #: :class:`~zoo.train.TrainConfig` fields of the model's paper (AVITM's Adam settings)
    default_train_config: ClassVar[dict] = {}
    #: for guides that find each document's posterior by :meth:`local_update` in training
    #: (the ``dirichlet`` guide's ``local_steps``): how many updates by default
    default_local_steps: ClassVar[int] = 0
    #: for guides whose global sites can take natural-gradient steps from
    #: :meth:`global_update` (the ``dirichlet`` guide's ``global_step``): the default
    default_global_step: ClassVar[str] = "gradient"
    #: ... and the defaults of those steps' schedule (``natural_offset``, ``natural_decay``,
    #: ``natural_batch``)
    default_natural_options: ClassVar[dict] = {}

    # --- the shape of the program ------------------------------------------------------------
    #: name of the data plate (``"documents"`` for topic models)
    plate_name: ClassVar[str] = "data"
    #: number of nested plates in the model (the data plate, plus e.g. LDA's words plate)
    max_plate_nesting: ClassVar[int] = 1
    #: how amortized guides preprocess ``x`` before their encoder (``"identity"``, ``"log1p"``)
    encoder_input: ClassVar[str] = "identity"
    #: data points are graphs ``[batch, V, V]`` (GraphBTM), not flat vectors
    graph_input: ClassVar[bool] = False

    # --- what it is, for metrics and figures ---------------------------------------------------
    #: a topic model: :meth:`topic_word_matrix` gives its topics (perplexity, NPMI, diversity)
    topic_model: ClassVar[bool] = False
    #: implements :meth:`local_update` and :meth:`global_update` in closed form (LDA)
    conjugate_updates: ClassVar[bool] = False

    def latent_sites(self) -> tuple[LatentSite, ...]:
        """Every latent sample site, in the order ``forward`` samples them."""
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

    def check_data(self, dataset) -> None:
        """Raise a ``ValueError`` saying the fix when ``dataset`` is not data this model can
        score (real-valued pixels for a Bernoulli likelihood, ...); nothing by default."""

    def data_plate(self, x: torch.Tensor, num_data: int | None = None) -> pyro.plate:
        """The model's data plate over the batch ``x``, subsampled from ``num_data`` points when
        given (so that a minibatch ELBO is unbiased)."""
        return data_plate(self.plate_name, x, num_data)

    @torch.no_grad()
    def example_batch(self, batch_size: int = 4) -> torch.Tensor:
        """A batch of observations drawn from the model's prior (used by the registry tests to
        exercise every (model, guide) pair). Models whose ``forward(None)`` cannot sample
        override this."""
        return self(None, batch_size=batch_size)

    # --- optional capabilities ----------------------------------------------------------------
    def topic_word_matrix(self, guide=None) -> torch.Tensor:
        """The topics ``[K, V]``, rows on the simplex (for models with :attr:`topic_model`);
        models whose topics are latent read them from the trained ``guide``."""
        raise ValueError(f"model '{self.registry_name}' is not a topic model.")

    def topic_correlations(self) -> torch.Tensor | None:
        """The learned correlations between topics ``[K, K]`` (CTM), or ``None``."""
        return None

    def observation_mean(self, trace) -> torch.Tensor | None:
        """The mean of :math:`p(x \\mid z)` ``[batch, input_dim]`` at the latents of a trace of
        this model, for sample and reconstruction figures; ``None`` when the model draws no
        images."""
        return None

    def local_update(self, x: torch.Tensor, concentration: torch.Tensor,
                     expected_log_globals: dict, steps: int) -> torch.Tensor:
        """Closed-form coordinate-ascent updates of the local posteriors (the E-step of
        variational Bayes) for models with :attr:`conjugate_updates`."""
        raise NotImplementedError(f"model '{self.registry_name}' has no closed-form E-step.")

    def global_update(self, x: torch.Tensor, concentration: torch.Tensor,
                      expected_log_globals: dict, scale: float = 1.0) -> dict:
        """The global posteriors' optimum given the local ones (the M-step of variational
        Bayes, the target of a natural-gradient step) for models with
        :attr:`conjugate_updates`."""
        raise NotImplementedError(f"model '{self.registry_name}' has no closed-form M-step.")


@contextlib.contextmanager
def evaluating(*programs, no_grad: bool = True):
    """Within this context every module among ``programs`` is in ``eval()`` mode (dropout off,
    BatchNorm on its running statistics) and, with ``no_grad``, no graph is recorded; each
    module's mode is restored on the way out, also after an error. Programs that are not
    modules (a guide may be a function) are left as they are."""
    modules = [m for m in programs if isinstance(m, torch.nn.Module)]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad() if no_grad else contextlib.nullcontext():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def like_module(x: torch.Tensor, module) -> torch.Tensor:
    """``x`` on ``module``'s device and, when floating point, in its floating-point type: data go
    to the model, never the model to the data (a module without parameters takes ``x`` as it
    is, on its buffers' device if it has any)."""
    tensor = next(iter(module.parameters()), None)
    if tensor is None:
        tensor = next(iter(module.buffers()), None)
    if tensor is None:
        return x
    dtype = tensor.dtype if x.is_floating_point() and tensor.is_floating_point() else None
    return x.to(tensor.device, dtype=dtype, non_blocking=True)


def encoder_input(kind: str, x: torch.Tensor) -> torch.Tensor:
    """Preprocess observations for an encoder: raw values, or log(1 + counts) for word counts
    (it tames the heavy tail of document lengths; NVDM and AVITM feed counts, many reimplementations
    use log1p)."""
    if kind == "identity":
        return x
    if kind == "log1p":
        return torch.log1p(x)
    raise ValueError(f"Unknown encoder_input {kind!r}; expected 'identity' or 'log1p'.")
