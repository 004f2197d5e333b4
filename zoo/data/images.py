r"""Image data sets for the VAE family: scikit-learn's 8x8 digits, MNIST IDX files, ``.npy``.

Every loader returns a :class:`~zoo.data.dataset.Dataset` of kind ``"image"`` whose rows are
flattened images with pixels in :math:`[0, 1]`. With ``binarize=True`` (the default, for a
Bernoulli likelihood) the training split draws a fresh binarization
:math:`x \sim \mathrm{Bernoulli}(\text{pixels})` for every batch (dynamic binarization) and the
test split is binarized once from ``seed``, so every evaluation scores the same binary images
[1]; with ``binarize=False`` both splits keep their real values (for a Gaussian likelihood).

``meta`` holds ``image_shape`` (``(rows, cols)``), ``labels`` (``{"train": ..., "test": ...}``,
integer numpy arrays, or ``None`` when the source has none), ``split`` (how train and test were
drawn) and ``source``.

Loaders, through :func:`zoo.data.load`:

- ``load("digits")``: scikit-learn's bundled digits (1,797 images, 8x8, no download), pixel
  intensities 0..16 divided by 16, seeded random split;
- ``load(DIR)``: a folder with MNIST's four IDX files (``train-images-idx3-ubyte``, ...,
  optionally ``.gz``), official split; ``limit=n`` keeps the first ``n`` images of each split;
- ``load("x.idx3-ubyte")``: one IDX images file (its ``labels-idx1`` sibling is read if there),
  seeded split;
- ``load("x.npy")``: an array ``[N, H, W]`` or ``[N, D]`` of pixels in :math:`[0, 1]`, or of
  integers 0..255 (divided by 255; arrays of only 0 and 1 are kept as binary), seeded split.

**References:**

1. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519 (dynamic binarization for training, fixed for evaluation)
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from zoo.data.dataset import Dataset, TensorSplit, train_test_indices
from zoo.data.mnist import read_idx_images, read_idx_labels
from zoo.data.registry import register_dataset, register_format

_IDX_SUFFIXES = (".idx3-ubyte", ".idx3-ubyte.gz", "-idx3-ubyte", "-idx3-ubyte.gz")


def image_dataset(name, train, test, *, image_shape, labels, split, source, binarize, seed):
    """Wrap float pixel arrays ``[N, D]`` in :math:`[0, 1]` as an image :class:`Dataset`.

    :param bool binarize: dynamic binarization of ``train`` and a fixed one (from ``seed``) of
        ``test``; ``False`` keeps real values
    """
    if not isinstance(binarize, bool):
        raise ValueError(f"binarize must be True or False, got {binarize!r}")
    train = torch.as_tensor(train, dtype=torch.float32)  # [N_train, D]
    test = torch.as_tensor(test, dtype=torch.float32)  # [N_test, D]
    if binarize:
        train_split, test_split = TensorSplit(train, "dynamic"), TensorSplit(test, "fixed", seed)
        split += f"; train binarized per batch, test binarized once (seed {seed})"
    else:
        train_split, test_split = TensorSplit(train), TensorSplit(test)
    meta = dict(image_shape=tuple(image_shape), labels=labels, split=split, source=str(source))
    return Dataset(name, train_split, test_split, kind="image", meta=meta)


def _seeded_split(name, pixels, labels, *, image_shape, source, test_fraction, seed, binarize):
    """A random, seeded train/test split of ``pixels`` ``[N, D]`` (and ``labels`` ``[N]``)."""
    if len(pixels) < 2:
        raise ValueError(f"{source}: {len(pixels)} image(s); a train/test split needs at least 2.")
    train_idx, test_idx = train_test_indices(len(pixels), test_fraction, seed)
    if len(train_idx) == 0:
        raise ValueError(
            f"{source}: test_fraction={test_fraction} leaves no training image out of "
            f"{len(pixels)}."
        )
    if labels is not None:
        labels = {"train": labels[train_idx], "test": labels[test_idx]}
    percent = round(100 * len(test_idx) / len(pixels))
    split = f"random {100 - percent}/{percent} ({len(train_idx)}/{len(test_idx)}), seed {seed}"
    return image_dataset(
        name,
        pixels[train_idx],
        pixels[test_idx],
        image_shape=image_shape,
        labels=labels,
        split=split,
        source=source,
        binarize=binarize,
        seed=seed,
    )


@register_dataset("digits")
def load_digits(test_fraction: float = 0.2, seed: int = 0, binarize: bool = True) -> Dataset:
    """scikit-learn's 8x8 handwritten digits (bundled, no download): 1,797 images, 64 pixels.

    :param float test_fraction: share of images held out for testing
    :param int seed: seed of the split (and of the test binarization)
    :param bool binarize: Bernoulli-ready binary pixels (``True``) or reals in [0, 1]
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    pixels = bunch.data.astype(np.float32) / 16.0  # intensities 0..16 -> [0, 1]
    return _seeded_split(
        "digits",
        pixels,
        bunch.target.astype(np.int64),
        image_shape=(8, 8),
        source="sklearn.datasets.load_digits",
        test_fraction=test_fraction,
        seed=seed,
        binarize=binarize,
    )


@register_format(".npy")
def load_npy(path, test_fraction=0.2, seed=0, binarize=True, image_shape=None) -> Dataset:
    """Images from a ``.npy`` array ``[N, H, W]`` or ``[N, D]``, checked row by row.

    Floats must lie in [0, 1]; integers (or booleans) must be 0..255 and are divided by 255,
    except arrays holding only 0 and 1, which are binary images already.

    :param image_shape: ``(H, W)`` of the rows of an ``[N, D]`` array; by default square when
        ``D`` is a square, else ``(1, D)``
    """
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc}).") from exc
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{path}: expected images of shape [N, H, W] or [N, D], got an array of shape "
            f"{array.shape} ({array.ndim}-d)."
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{path}: expected numeric pixels, got dtype {array.dtype}.")
    rows = array.reshape(len(array), -1)
    if rows.shape[1] == 0:
        raise ValueError(f"{path}: wrong image size: shape {array.shape} has no pixels.")
    if array.dtype.kind == "f":
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            value = rows[bad[0]][~np.isfinite(rows[bad[0]])][0]
            raise ValueError(
                f"{path}: row {bad[0]} contains {value} ({len(bad)} row(s) with NaN or inf); "
                "pixels must be finite values in [0, 1]."
            )
        low, high = 0.0, 1.0
    else:
        binary = bool(((rows == 0) | (rows == 1)).all())
        low, high = 0, (1 if binary else 255)
    outside = ((rows < low) | (rows > high)).any(axis=1)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        value = rows[row][(rows[row] < low) | (rows[row] > high)][0]
        hint = " (divide 0..255 intensities by 255)" if array.dtype.kind == "f" else ""
        raise ValueError(
            f"{path}: row {row} has value {value} outside [{low}, {high}] "
            f"({int(outside.sum())} row(s) out of range){hint}."
        )
    pixels = rows.astype(np.float32) / np.float32(high)
    if array.ndim == 3:
        shape = array.shape[1:]
    else:
        side = math.isqrt(rows.shape[1])
        shape = (side, side) if side * side == rows.shape[1] else (1, rows.shape[1])
    if image_shape is not None:
        if math.prod(image_shape) != rows.shape[1]:
            raise ValueError(
                f"{path}: wrong image size: image_shape={tuple(image_shape)} has "
                f"{math.prod(image_shape)} pixels, the rows have {rows.shape[1]}."
            )
        shape = image_shape
    return _seeded_split(
        path.stem,
        pixels,
        None,
        image_shape=shape,
        source=path,
        test_fraction=test_fraction,
        seed=seed,
        binarize=binarize,
    )


def _find(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` in MNIST's spelling (``train-images-idx3-ubyte``) or the common dotted
    one (``train-images.idx3-ubyte``), plain or gzipped."""
    kind, _, fmt = stem.rpartition("-idx")
    for name in (stem, f"{kind}.idx{fmt}"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _images_and_labels(images_path: Path, labels_path: Path | None, limit: int | None):
    """Pixels ``[n, rows*cols]`` in [0, 1], image shape and labels (checked to match)."""
    images = read_idx_images(images_path)
    labels = None
    if labels_path is not None:
        labels = read_idx_labels(labels_path)
        if len(labels) != len(images):
            raise ValueError(
                f"{labels_path}: {len(labels)} labels for the {len(images)} images of "
                f"{images_path.name}; the two files must describe the same images."
            )
        labels = labels[:limit].astype(np.int64)
    images = images[:limit]
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return pixels, images.shape[1:], labels


def _check_limit(limit):
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of images or None, got {limit!r}")


@register_format("dir")
def load_mnist_dir(path, binarize=True, seed=0, limit=None) -> Dataset:
    """MNIST (or Fashion-MNIST, ...) from a folder holding the four official IDX files, with
    the official train (``train-*``) / test (``t10k-*``) split.

    :param int seed: seed of the fixed test binarization
    :param int limit: keep only the first ``limit`` images of each split (quick runs)
    """
    _check_limit(limit)
    folder = Path(path)
    names = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    found = [_find(folder, name) for name in names]
    missing = [name for name, file in zip(names, found) if file is None]
    if missing:
        raise ValueError(
            f"{folder}: not an MNIST folder: missing {', '.join(missing)} (each may end in .gz). "
            "Download the files with `zoo data download mnist --out DIR`."
        )
    train, shape, train_labels = _images_and_labels(found[0], found[1], limit)
    test, test_shape, test_labels = _images_and_labels(found[2], found[3], limit)
    if test_shape != shape:
        raise ValueError(
            f"{found[2]}: wrong image size {test_shape[0]}x{test_shape[1]}, the training images "
            f"in {found[0].name} are {shape[0]}x{shape[1]}."
        )
    split = f"official train/t10k files ({len(train)}/{len(test)})"
    if limit is not None:
        split += f", first {limit} of each"
    return image_dataset(
        "mnist",
        train,
        test,
        image_shape=shape,
        labels={"train": train_labels, "test": test_labels},
        split=split,
        source=folder,
        binarize=binarize,
        seed=seed,
    )


@register_format(*_IDX_SUFFIXES)
def load_idx_file(path, test_fraction=0.2, seed=0, binarize=True, limit=None) -> Dataset:
    """One IDX images file, split at random (seeded). Labels come from its sibling
    (``...-labels-idx1-ubyte``, same folder, same spelling, optionally ``.gz``) if present.

    :param int limit: keep only the first ``limit`` images before splitting
    """
    _check_limit(limit)
    path = Path(path)
    stem = path.name.removesuffix(".gz")
    labels_path = None
    if "images" in stem and "idx3" in stem:
        labels_stem = stem.replace("images", "labels").replace("idx3", "idx1")
        candidates = (path.parent / labels_stem, path.parent / f"{labels_stem}.gz")
        labels_path = next((f for f in candidates if f.is_file()), None)
    pixels, shape, labels = _images_and_labels(path, labels_path, limit)
    name = stem.replace(".idx3-ubyte", "").replace("-idx3-ubyte", "")
    return _seeded_split(
        name,
        pixels,
        labels,
        image_shape=shape,
        source=path,
        test_fraction=test_fraction,
        seed=seed,
        binarize=binarize,
    )
