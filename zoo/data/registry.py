"""Name and file-format dispatch for :func:`zoo.data.load`.

Named datasets (``"digits"``, ...) and file formats (``".npy"``, ``".ldac"``, ...) register a
loader here from the module that implements them (``images.py``, ``text.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

_NAMED: dict[str, Callable] = {}
_FORMATS: dict[str, Callable] = {}


def register_dataset(name: str):
    """Decorator for ``loader(**options) -> Dataset`` of a bundled or well-known dataset."""

    def wrapper(fn):
        if name in _NAMED:
            raise ValueError(f"A dataset is already registered under the name '{name}'.")
        _NAMED[name] = fn
        return fn

    return wrapper


def register_format(*suffixes: str):
    """Decorator for ``loader(path, **options) -> Dataset`` of files ending in ``suffixes``
    (``"dir:mnist"`` style keys are matched by :func:`load`'s caller, not by suffix)."""

    def wrapper(fn):
        for suffix in suffixes:
            if suffix in _FORMATS:
                raise ValueError(f"A loader is already registered for '{suffix}' files.")
            _FORMATS[suffix] = fn
        return fn

    return wrapper


def list_datasets() -> list[str]:
    return sorted(_NAMED)


def list_formats() -> list[str]:
    return sorted(_FORMATS)


def load(name_or_path, **options):
    """Load a named dataset or a file (dispatching on its suffix); see ``list_datasets()`` and
    ``list_formats()``. Keyword ``options`` go to the loader (``test_fraction``, ``seed``, ...)."""
    key = str(name_or_path)
    if key in _NAMED:
        return _NAMED[key](**options)
    path = Path(key)
    if path.is_dir() and "dir" in _FORMATS:
        return _FORMATS["dir"](path, **options)
    # Match on the end of the name, not Path.suffixes: MNIST's own file names
    # ("train-images-idx3-ubyte.gz") carry their format before the first dot.
    file_name = path.name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):
        if suffix != "dir" and file_name.endswith(suffix):
            if not path.exists():
                raise ValueError(f"{path}: no such file.")
            return _FORMATS[suffix](path, **options)
    raise ValueError(
        f"Cannot load {key!r}: not a registered dataset ({', '.join(list_datasets())}) and not "
        f"a file of a known format ({', '.join(f for f in list_formats() if f != 'dir')})."
    )
