"""Name and file-format dispatch for :func:`zoo.data.load`.

Named datasets (``"digits"``, ...) and file formats (``".npy"``, ``".ldac"``, ...) register a
loader here from the module that implements them (``images.py``, ``text.py``).
"""

from __future__ import annotations

from pathlib import Path

from zoo.registry import Registry

DATASETS = Registry("dataset")
FORMATS = Registry("file format")


def register_dataset(name: str):
    """Decorator for ``loader(**options) -> Dataset`` of a bundled or well-known dataset."""
    return DATASETS.register(name)


def register_format(*suffixes: str):
    """Decorator for ``loader(path, **options) -> Dataset`` of files ending in ``suffixes``
    (the key ``"dir"`` is a folder's loader)."""

    def wrapper(fn):
        for suffix in suffixes:
            FORMATS.register(suffix)(fn)
        return fn

    return wrapper


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return DATASETS.names()


def list_formats() -> list[str]:
    """Names of the registered file formats, sorted."""
    return FORMATS.names()


def find_loader(name_or_path):
    """``(loader, path)``: the loader :func:`load` calls for ``name_or_path`` and the path it
    passes it (``None`` for a named dataset, whose loader takes options only); a ``ValueError``
    when the name is unknown or the file is missing."""
    key = str(name_or_path)
    if key in DATASETS:
        return DATASETS.get(key), None
    path = Path(key)
    if path.is_dir() and "dir" in FORMATS:
        return FORMATS.get("dir"), path
    # Match on the end of the name, not Path.suffixes: MNIST's own file names
    # ("train-images-idx3-ubyte.gz") carry their format before the first dot.
    file_name = path.name.lower()
    for suffix in sorted(FORMATS.names(), key=len, reverse=True):
        if suffix != "dir" and file_name.endswith(suffix):
            if not path.exists():
                raise ValueError(f"{path}: no such file.")
            return FORMATS.get(suffix), path
    known = "no such file or folder" if not path.exists() else "a file of unknown format"
    raise ValueError(
        f"Cannot load {key!r} ({known}): not a registered dataset ({', '.join(list_datasets())}) "
        f"and not a file of a known format ({', '.join(f for f in list_formats() if f != 'dir')})."
    )


def load(name_or_path, **options):
    """Load a named dataset or a file (dispatching on its suffix); see ``list_datasets()`` and
    ``list_formats()``. Keyword ``options`` go to the loader (``test_fraction``, ``seed``, ...)."""
    loader, path = find_loader(name_or_path)
    return loader(**options) if path is None else loader(path, **options)
