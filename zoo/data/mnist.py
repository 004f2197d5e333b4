r"""MNIST's IDX file format: an exact reader, a writer, and the download of the official files.

An IDX file is a 4-byte magic number, one big-endian ``uint32`` per dimension, then the payload
in row-major order [1]. The magic number is two zero bytes, a type code (``0x08`` for unsigned
bytes) and the number of dimensions, so MNIST's images are ``0x00000803`` (``uint8``, 3-d:
``[N, rows, cols]``) and its labels ``0x00000801`` (``uint8``, 1-d: ``[N]``). The reader checks
the magic number, the header and that the payload has exactly the announced length, and reads
gzipped files (``.gz``, recognized by their content) as they are downloaded.

:func:`download_mnist` is the only function in the zoo that touches the network; it runs when a
user asks for it (``zoo data download mnist --out DIR``), never when a dataset is loaded.

**References:**

1. *The MNIST database of handwritten digits*, Y. LeCun, C. Cortes, C. J. C. Burges,
   http://yann.lecun.com/exdb/mnist/ (section "File formats for the MNIST database")
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension

# IDX type code -> numpy dtype (multi-byte types are big-endian).
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: Mirrors of the official files, tried in order (yann.lecun.com often answers 403 nowadays).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: The four official files: name -> (MD5 of the ``.gz`` file, its size in bytes).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    "train-labels-idx1-ubyte.gz": ("d53e105ee54ea40749a09fcbcd1e9432", 28881),
    "t10k-images-idx3-ubyte.gz": ("9fb629c4189551a2d022fa330f9573f3", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("ec29112dd5afa0611ce80d1b7f02629c", 4542),
}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic ``1f 8b``."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc}).") from exc


def read_idx(path, magic: int | None = None, what: str = "values") -> np.ndarray:
    """Read one IDX array exactly.

    :param path: an IDX file, plain or gzipped
    :param int magic: the magic number the file must have (``IMAGES_MAGIC``, ``LABELS_MAGIC``);
        ``None`` accepts any valid IDX type
    :param str what: what the payload holds, for error messages (``"pixels"``, ``"labels"``)
    :returns: an array of the header's shape, in native byte order
    :raises ValueError: naming the file, on a wrong magic number, a truncated header or payload,
        or bytes after the payload
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated: {len(raw)} bytes, too short for an IDX magic number.")
    (found_magic,) = struct.unpack(">I", raw[:4])
    if magic is not None and found_magic != magic:
        kinds = {IMAGES_MAGIC: "uint8 images, 3-d", LABELS_MAGIC: "uint8 labels, 1-d"}
        raise ValueError(
            f"{path}: wrong magic number 0x{found_magic:08X}, expected 0x{magic:08X} "
            f"({kinds.get(magic, 'IDX')}); is it the right file, and an IDX file at all?"
        )
    type_code, ndim = (found_magic >> 8) & 0xFF, found_magic & 0xFF
    if found_magic >> 16 != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (magic number 0x{found_magic:08X}).")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated: the header of a {ndim}-d IDX file takes {header} bytes, "
            f"found {len(raw)}."
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    count = int(np.prod(dims, dtype=np.int64))
    expected, found = count * dtype.itemsize, len(raw) - header
    shape = "x".join(str(d) for d in dims)
    if found < expected:
        raise ValueError(
            f"{path}: truncated: header says {shape} = {expected} bytes of {what}, found {found}."
        )
    if found > expected:
        raise ValueError(
            f"{path}: {found - expected} unexpected bytes after the {expected} bytes of {what} "
            f"that the header announces ({shape})."
        )
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return values.astype(dtype.newbyteorder("="))


def read_idx_images(path) -> np.ndarray:
    """``uint8`` images ``[N, rows, cols]`` from an IDX file with magic ``0x00000803``."""
    images = read_idx(path, IMAGES_MAGIC, "pixels")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"{path}: wrong image size {images.shape[1]}x{images.shape[2]}.")
    return images


def read_idx_labels(path) -> np.ndarray:
    """``uint8`` labels ``[N]`` from an IDX file with magic ``0x00000801``."""
    return read_idx(path, LABELS_MAGIC, "labels")


def write_idx(path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``); the inverse of
    :func:`read_idx`. Handy to store a subset of MNIST, or a new data set, in MNIST's format."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(
            f"{path}: IDX stores arrays of uint8, int8, int16, int32, float32 or float64 with at "
            f"least one dimension, got {array.dtype} of shape {array.shape}."
        )
    header = struct.pack(f">I{array.ndim}I", (code << 8) | array.ndim, *array.shape)
    data = header + array.astype(_IDX_TYPES[code]).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def _fetch(url: str, target: Path, md5: str, size: int, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file, checking size and MD5."""
    part = target.with_name(target.name + ".part")
    digest, received = hashlib.md5(usedforsecurity=False), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, part.open("wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
                received += len(block)
        if received != size or digest.hexdigest() != md5:
            raise ValueError(
                f"got {received} bytes with MD5 {digest.hexdigest()}, expected {size} bytes "
                f"with MD5 {md5}"
            )
        os.replace(part, target)  # atomic: a file under its final name is always complete
    finally:
        part.unlink(missing_ok=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(
    dest_dir,
    urls: Sequence[str] | None = None,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Download the four official MNIST files (gzipped IDX) into ``dest_dir``, so that
    ``zoo.data.load(dest_dir)`` loads them with the official 60,000/10,000 split.

    Files already present with the right checksum are kept; every other file is fetched from
    the first mirror that serves it with the expected size and MD5, written under a temporary
    name and renamed once verified.

    :param dest_dir: the folder to fill (created if needed)
    :param urls: mirror base URLs, tried in order; defaults to :data:`MIRRORS`
    :param float timeout: seconds to wait for a server before trying the next mirror
    :param log: called with one line per file (``print`` shows progress)
    :returns: ``dest_dir`` as a :class:`~pathlib.Path`
    :raises OSError: when a file cannot be had from any mirror; the message lists every attempt
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = tuple(MIRRORS if urls is None else urls)
    if not mirrors:
        raise ValueError("download_mnist needs at least one mirror URL.")
    for name, (md5, size) in MNIST_FILES.items():
        target = dest / name
        if target.is_file() and _md5(target) == md5:
            if log is not None:
                log(f"{target}: present, checksum ok")
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                _fetch(url, target, md5, size, timeout)
            except (OSError, ValueError) as exc:  # urllib's URLError/HTTPError are OSErrors
                failures.append(f"{url}: {exc}")
                continue
            if log is not None:
                log(f"{target}: downloaded from {url}")
            break
        else:
            raise OSError(
                f"Could not download {name} from any mirror:\n  "
                + "\n  ".join(failures)
                + "\nCheck the network, or pass other mirrors (urls=...)."
            )
    return dest
