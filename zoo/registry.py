r"""Registries: name -> object tables with one decorator, in the style of torchvision's
``models/_api.py``.

:class:`Registry` is the one mechanism; the zoo keeps five of them: models and guide families
(here), objectives (:mod:`zoo.infer.objectives`), named datasets and file formats
(:mod:`zoo.data.registry`). A duplicate name is an error, and an unknown name raises a
``ValueError`` that lists the valid ones.

Models register under a name and are built with ``get_model(name, **config)``. Guide families
register under a name too, but a guide family is generic over what it approximates: whether it
fits a model is decided by the model's latent sites (:meth:`ZooModel.latent_sites`), never by the
model's name. ``list_guides(model)`` therefore asks every family whether it fits:

    >>> model = get_model("vae", input_dim=64)
    >>> list_guides(model)
    ['chain_normal', 'ctf', 'diagonal_normal', 'householder', 'low_rank_normal']
    >>> guide = get_guide("householder", model, num_flows=4)
    >>> get_guide("dirichlet", model)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Guide 'dirichlet' does not fit model 'vae': ... Guides that fit it: ...

This module imports nothing from the zoo: the families register themselves when their packages
are imported (``zoo/models/__init__.py`` and ``guides/__init__.py`` list them), and the lookup
functions import those two packages on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator


class Registry:
    """A table of named objects with a decorator to fill it.

    :param str kind: what the entries are, for messages ("model", "objective", ...)
    :param str unknown: how to say a name is unknown (default ``"Unknown {kind} '{name}'."``)
    :param str choices: how to introduce the valid names (default ``"Registered {kind}s:"``)
    :param on_first_use: called once before the first lookup (to import the modules that
        register entries)

    >>> colors = Registry("color")
    >>> @colors.register("red")
    ... def red():
    ...     return "#f00"
    >>> colors.get("red")()
    '#f00'
    >>> colors.get("blue")
    Traceback (most recent call last):
    ...
    ValueError: Unknown color 'blue'. Registered colors: red.
    """

    def __init__(self, kind: str, unknown: str | None = None, choices: str | None = None,
                 on_first_use: Callable[[], None] | None = None):
        self.kind = kind
        self._unknown = unknown or "Unknown {kind} '{name}'."
        self._choices = choices or "Registered {kind}s:"
        self._entries: dict[str, object] = {}
        self._on_first_use = on_first_use

    def _ready(self) -> None:
        if self._on_first_use is not None:
            hook, self._on_first_use = self._on_first_use, None
            hook()

    def register(self, name: str | None = None, *, tag: bool = False):
        """Decorator storing its argument under ``name`` (default: its lowercased
        ``__name__``); raises on a duplicate. With ``tag`` the object also gets
        ``registry_name`` (models and guides carry their own name into run folders)."""

        def wrapper(obj):
            key = name if name is not None else obj.__name__.lower()
            if key in self._entries:
                raise ValueError(f"A {self.kind} is already registered under the name '{key}'.")
            if tag:
                obj.registry_name = key
            self._entries[key] = obj
            return obj

        return wrapper

    def get(self, name: str):
        """The entry registered under ``name``; a ``ValueError`` listing the names if none."""
        self._ready()
        try:
            return self._entries[name]
        except KeyError:
            message = self._unknown.format(kind=self.kind, name=name)
            raise ValueError(f"{message} {self._choices.format(kind=self.kind)} "
                             f"{', '.join(self.names())}.") from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._ready()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, object]]:
        """Every ``(name, entry)`` pair, sorted by name."""
        self._ready()
        return iter(sorted(self._entries.items()))

    def __contains__(self, name: str) -> bool:
        self._ready()
        return name in self._entries


def _import_families():
    # Registration happens on import (as in timm); the packages list their families.
    import guides  # noqa: F401
    import zoo.models  # noqa: F401


MODELS = Registry("model", on_first_use=_import_families)
GUIDES = Registry("guide", on_first_use=_import_families)


def register_model(name: str | None = None):
    """Class decorator: register a :class:`~zoo.models.base.ZooModel` under ``name``."""
    return MODELS.register(name, tag=True)


def register_guide(name: str | None = None):
    """Class decorator: register a guide family (a :class:`~guides.base.ZooGuide`), whose
    ``why_not(model)`` returns ``None`` when it fits the model and otherwise says why not."""
    return GUIDES.register(name, tag=True)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()


def find_model(name: str) -> type:
    """The model class registered under ``name``."""
    return MODELS.get(name)


def get_model(name: str, **config):
    """Build the model registered under ``name`` with keyword ``config``."""
    return find_model(name)(**config)


def list_guides(model) -> list[str]:
    """Names of the guide families that fit ``model`` (an instance, or a model name built with
    its default configuration), sorted."""
    if isinstance(model, str):
        model = get_model(model)
    return [name for name, cls in GUIDES.items() if cls.why_not(model) is None]


def list_all_guides() -> list[str]:
    """Names of every registered guide family, sorted (:func:`list_guides` gives those that fit a
    model)."""
    return GUIDES.names()


def find_guide(name: str) -> type:
    """The guide family registered under ``name``."""
    return GUIDES.get(name)


def accepted_options(cls) -> dict[str, inspect.Parameter]:
    """The keyword options a model or guide class takes, by name, following ``**options`` up
    the classes it passes them to (``HouseholderGuide(model, num_flows, **options)`` takes the
    diagonal guide's too). The first positional argument (a guide's model) is not an option."""
    options: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "model":
                options.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return options


def default_guide_options(model, name: str) -> dict:
    """The model's ``default_guide_options`` that guide family ``name`` takes (AVITM's encoder
    settings reach every Gaussian guide; a family without, say, ``batch_norm`` goes without)."""
    accepted = accepted_options(find_guide(name))
    return {k: v for k, v in model.default_guide_options.items() if k in accepted}


def get_guide(name: str, model, **options):
    """Build guide family ``name`` for ``model``: ``Guide(model, **options)``.

    Raises a ``ValueError`` that names the guides that do fit when this one does not.
    """
    cls = find_guide(name)
    reason = cls.why_not(model)
    if reason is not None:
        raise ValueError(
            f"Guide '{name}' does not fit model '{model.registry_name}': {reason} "
            f"Guides that fit it: {', '.join(list_guides(model)) or 'none'}."
        )
    return cls(model, **options)
