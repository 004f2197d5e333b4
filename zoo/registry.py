r"""Registry of models and guide families, in the style of torchvision's ``models/_api.py``.

Models register under a name and are built with ``get_model(name, **config)``. Guide families
register under a name too, but a guide family is generic over what it approximates: whether it
fits a model is decided by the model's latent sites (:meth:`ZooModel.latent_sites`), never by the
model's name. ``list_guides(model)`` therefore asks every family whether it fits::

    >>> model = get_model("vae", input_dim=64)
    >>> list_guides(model)              # doctest: +SKIP
    ['diagonal_normal', 'householder']
    >>> guide = get_guide("householder", model, num_flows=4)
"""

from __future__ import annotations

from collections.abc import Callable

_MODELS: dict[str, Callable] = {}
_GUIDES: dict[str, type] = {}


def _register(table: dict, kind: str, name: str | None):
    def wrapper(obj):
        key = name if name is not None else obj.__name__.lower()
        if key in table:
            raise ValueError(f"A {kind} is already registered under the name '{key}'.")
        obj.registry_name = key
        table[key] = obj
        return obj

    return wrapper


def register_model(name: str | None = None):
    """Class decorator: register a :class:`~zoo.models.base.ZooModel` under ``name``."""
    return _register(_MODELS, "model", name)


def register_guide(name: str | None = None):
    """Class decorator: register a guide family. The class must define ``why_not(model)``,
    returning ``None`` when it fits the model and otherwise a sentence saying why not."""
    return _register(_GUIDES, "guide", name)


def _ensure_imported():
    # Registration happens on import (as in timm); importing here keeps ``zoo.registry`` usable
    # on its own without an import cycle at module load.
    import guides  # noqa: F401
    import zoo.models  # noqa: F401


def list_models() -> list[str]:
    _ensure_imported()
    return sorted(_MODELS)


def find_model(name: str) -> Callable:
    _ensure_imported()
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model '{name}'. Registered models: {', '.join(sorted(_MODELS))}."
        ) from None


def get_model(name: str, **config):
    """Build the model registered under ``name`` with keyword ``config``."""
    return find_model(name)(**config)


def _model_name(model) -> str:
    return getattr(model, "registry_name", type(model).__name__)


def list_guides(model) -> list[str]:
    """Names of the guide families that fit ``model`` (an instance, or a model name built with
    its default configuration), in registration-independent sorted order."""
    _ensure_imported()
    if isinstance(model, str):
        model = get_model(model)
    return sorted(name for name, cls in _GUIDES.items() if cls.why_not(model) is None)


def list_all_guides() -> list[str]:
    _ensure_imported()
    return sorted(_GUIDES)


def find_guide(name: str) -> type:
    _ensure_imported()
    try:
        return _GUIDES[name]
    except KeyError:
        raise ValueError(
            f"Unknown guide '{name}'. Registered guides: {', '.join(sorted(_GUIDES))}."
        ) from None


def get_guide(name: str, model, **options):
    """Build guide family ``name`` for ``model``: ``Guide(model, **options)``.

    Raises a ``ValueError`` that names the guides that do fit when this one does not.
    """
    cls = find_guide(name)
    reason = cls.why_not(model)
    if reason is not None:
        raise ValueError(
            f"Guide '{name}' does not fit model '{_model_name(model)}': {reason} "
            f"Guides that fit it: {', '.join(list_guides(model)) or 'none'}."
        )
    return cls(model, **options)
