r"""Bag-of-words file formats: exact readers and writers that refuse bad input.

Each reader returns a :class:`Corpus` (a CSR count matrix ``[documents, vocabulary]`` and the
vocabulary, with token order, labels and titles where the format has them); :mod:`zoo.data.text`
turns it into a train/test :class:`~zoo.data.dataset.Dataset`. Formats:

- **LDA-C** (Blei's ``lda-c`` [1]): one document per line, ``N id:count id:count ...`` with
  ``N`` the number of pairs and 0-based word ids; the vocabulary (one word per line, line ``i`` is
  word ``i``) is a separate file. Word order is lost: readers return ``tokens=None``.
- **svmlight / NVDM** [2, 3]: ``label id:count ...`` with **1-based** ids and a vocabulary file
  whose line ``i`` starts with word ``i`` (NVDM's ``vocab.new`` is ``word count``). Word order is
  lost; labels are kept.
- **npz**: our own ``numpy.savez_compressed`` archive (:func:`save_npz_corpus`): the CSR arrays
  ``data``, ``indices``, ``indptr``, ``shape``, the ``vocab`` and optionally ``titles``, ``labels``
  and token sequences (``token_ids`` + ``token_offsets``). A matrix saved with
  ``scipy.sparse.save_npz`` is read too when ``vocab=`` is given.

Bad input raises a ``ValueError`` that names the file, the line (1-based; the row for ``.npz``)
and the problem: a malformed ``id:count`` token, a NaN, infinite, negative or fractional count, a
word id outside the vocabulary, an LDA-C line whose leading ``N`` disagrees with its pairs.
Counts of zero are allowed and ignored; a word id repeated on a line has its counts added.

**References:**

1. *lda-c: Latent Dirichlet allocation in C*, D. M. Blei, readme.txt (data format)
2. *Making large-scale SVM learning practical*, T. Joachims (1999) (the svmlight format)
3. *Neural Variational Inference for Text Processing*, Y. Miao, L. Yu, P. Blunsom (2016),
   arXiv:1511.06038 (``ysmiao/nvdm``'s ``.feat`` files)
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

NPZ_FORMAT = "zoo-corpus-v1"


@dataclass
class Corpus:
    """What a reader returns: ``counts`` ``[D, V]`` (CSR, int64), ``vocab`` (``V`` words),
    ``tokens`` (``D`` int64 arrays of word ids in document order, or ``None``), ``labels``
    (``[D]`` array or ``None``), ``titles`` (``D`` strings or ``None``), ``source`` (a path)."""

    counts: sp.csr_matrix
    vocab: list
    tokens: list | None = None
    labels: np.ndarray | None = None
    titles: list | None = None
    source: str = ""


def read_lines(path) -> list[str]:
    """The UTF-8 lines of a text file, without line ends (line ``i`` is ``lines[i - 1]``)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a text file.")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file.") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not valid UTF-8 ({exc.reason}).") from exc
    lines = [line.rstrip("\r") for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_vocab(path) -> list[str]:
    """A vocabulary file: line ``i`` starts with word ``i`` (anything after it, such as NVDM's
    corpus count, is ignored). Blank lines and repeated words are refused."""
    words, seen = [], {}
    for lineno, line in enumerate(read_lines(path), 1):
        fields = line.split()
        if not fields:
            raise ValueError(f"{path}, line {lineno}: empty line in a vocabulary file.")
        if fields[0] in seen:
            raise ValueError(
                f"{path}, line {lineno}: word {fields[0]!r} already on line {seen[fields[0]]}."
            )
        seen[fields[0]] = lineno
        words.append(fields[0])
    if not words:
        raise ValueError(f"{path}: empty vocabulary file.")
    return words


def _resolve_vocab(path: Path, vocab, candidates) -> list[str]:
    """``vocab`` (a list of words or a file), else the first of ``candidates`` beside ``path``."""
    if vocab is not None and not isinstance(vocab, (str, os.PathLike)):
        return [str(w) for w in vocab]
    if vocab is not None:
        return read_vocab(vocab)
    for name in candidates:
        if (path.parent / name).exists():
            return read_vocab(path.parent / name)
    raise ValueError(
        f"{path}: no vocabulary file found beside it (looked for {', '.join(candidates)}); "
        f"pass vocab=PATH (one word per line)."
    )


def _parse_pairs(path, fields, sizes, num_words, one_based):
    """Vectorized parse of all ``id:count`` fields; on failure, name the first bad one."""
    sizes = np.asarray(sizes, dtype=np.int64)
    ends = np.cumsum(sizes)

    def fail(i, problem):
        line = int(np.searchsorted(ends, i, side="right")) + 1
        raise ValueError(f"{path}, line {line}: {problem} in {fields[i]!r}.")

    parts = [f.partition(":") for f in fields]
    ids_s = [p[0] for p in parts]
    counts_s = [p[2] for p in parts]
    for i, p in enumerate(parts):
        if p[1] != ":" or not p[0] or not p[2]:
            fail(i, "malformed token (expected id:count)")

    def convert(strings, kind, dtype, problem):  # fast path; on failure, find the culprit
        try:
            return np.fromiter(map(kind, strings), dtype, count=len(strings))
        except (ValueError, OverflowError):
            for i, s in enumerate(strings):
                try:
                    np.array(kind(s), dtype)
                except (ValueError, OverflowError):
                    fail(i, f"malformed token: {problem.format(s)}")
            raise

    ids = convert(ids_s, int, np.int64, "word id {!r} is not a 64-bit integer")
    counts = convert(counts_s, float, np.float64, "count {!r} is not a number")
    base = 1 if one_based else 0
    checks = [
        (np.isnan(counts), "NaN count"),
        (np.isinf(counts) | (counts >= 2.0**53), "infinite or too large count"),
        (counts < 0, "negative count"),
        (counts != np.floor(counts), "fractional count (counts must be whole numbers)"),
        (
            (ids < base) | (ids >= num_words + base),
            f"word id outside the vocabulary of {num_words} words "
            f"({'1-based' if one_based else '0-based'} ids {base}..{num_words - 1 + base})",
        ),
    ]
    for bad, problem in checks:
        if bad.any():
            fail(int(np.argmax(bad)), problem)
    rows = np.repeat(np.arange(len(sizes)), sizes)
    shape = (len(sizes), num_words)
    counts = sp.csr_matrix((counts.astype(np.int64), (rows, ids - base)), shape=shape)
    counts.sum_duplicates()
    counts.eliminate_zeros()
    return counts


def read_ldac(path, vocab=None) -> Corpus:
    """Read an LDA-C file (``N id:count ...``, 0-based ids). The vocabulary is ``vocab`` (a list
    or a file) or the first of ``STEM.vocab``, ``STEM.tokens``, ``vocab.txt`` beside the file;
    titles are read from ``STEM.titles`` when it exists. Word order is lost (``tokens=None``)."""
    path = Path(path)
    words = _resolve_vocab(path, vocab, (f"{path.stem}.vocab", f"{path.stem}.tokens", "vocab.txt"))
    fields, sizes = [], []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if parts:
            try:
                n = int(parts[0])
            except ValueError:
                raise ValueError(
                    f"{path}, line {lineno}: leading count {parts[0]!r} is not an integer "
                    f"(LDA-C lines are 'N id:count id:count ...')."
                ) from None
            if n != len(parts) - 1:
                raise ValueError(
                    f"{path}, line {lineno}: count mismatch: the line starts with N={n} but has "
                    f"{len(parts) - 1} id:count pairs."
                )
        fields.extend(parts[1:])
        sizes.append(max(len(parts) - 1, 0))
    counts = _parse_pairs(path, fields, sizes, len(words), one_based=False)
    titles_path = path.parent / f"{path.stem}.titles"
    titles = read_lines(titles_path) if titles_path.exists() else None
    if titles is not None and len(titles) != counts.shape[0]:
        raise ValueError(
            f"{titles_path}: {len(titles)} titles for the {counts.shape[0]} documents of {path}."
        )
    return Corpus(counts, words, titles=titles, source=str(path))


def read_svmlight(path, vocab=None) -> Corpus:
    """Read svmlight / NVDM ``label id:count ...`` lines (1-based ids; ``#`` starts a comment).
    The vocabulary is ``vocab`` or the first of ``STEM.vocab``, ``vocab.txt``, ``vocab.new``
    beside the file. Word order is lost (``tokens=None``); labels are kept."""
    path = Path(path)
    words = _resolve_vocab(path, vocab, (f"{path.stem}.vocab", "vocab.txt", "vocab.new"))
    fields, sizes, labels = [], [], []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split("#", 1)[0].split()
        label = np.nan
        if parts:
            if ":" in parts[0]:
                raise ValueError(
                    f"{path}, line {lineno}: missing label: the line starts with {parts[0]!r} "
                    f"(svmlight lines are 'label id:count id:count ...')."
                )
            try:
                label = float(parts[0])
            except ValueError:
                raise ValueError(
                    f"{path}, line {lineno}: label {parts[0]!r} is not a number."
                ) from None
        labels.append(label)
        fields.extend(parts[1:])
        sizes.append(max(len(parts) - 1, 0))
    counts = _parse_pairs(path, fields, sizes, len(words), one_based=True)
    labels, known = np.asarray(labels), np.isfinite(labels)
    if np.all(labels[known] == np.round(labels[known])):  # integer classes; -1 on blank lines
        labels = np.where(known, labels, -1).astype(np.int64)
    return Corpus(counts, words, labels=labels, source=str(path))


def _pairs_lines(counts, base):
    counts = sp.csr_matrix(counts)
    counts.sort_indices()
    for d in range(counts.shape[0]):
        lo, hi = counts.indptr[d], counts.indptr[d + 1]
        ids, values = counts.indices[lo:hi] + base, counts.data[lo:hi]
        yield " ".join(f"{i}:{int(c)}" for i, c in zip(ids, values) if c != 0)


def _write_vocab(path, vocab, counts=None):
    for i, word in enumerate(vocab):
        if not word or any(c.isspace() for c in word):
            raise ValueError(f"{path}: vocabulary word {i} ({word!r}) is empty or has spaces.")
    totals = None if counts is None else np.asarray(counts.sum(axis=0)).ravel().astype(int)
    lines = vocab if totals is None else [f"{w} {c}" for w, c in zip(vocab, totals)]
    Path(path).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_ldac(path, counts, vocab=None, titles=None) -> Path:
    """Write ``counts`` ``[D, V]`` as LDA-C; ``vocab`` goes to ``STEM.vocab`` and ``titles`` to
    ``STEM.titles`` beside it, where :func:`read_ldac` finds them."""
    path, counts = Path(path), sp.csr_matrix(counts)
    lines = [f"{len(p.split())} {p}".rstrip() for p in _pairs_lines(counts, 0)]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    if vocab is not None:
        _write_vocab(path.parent / f"{path.stem}.vocab", vocab)
    if titles is not None:
        text = "".join(f"{' '.join(str(t).split())}\n" for t in titles)
        (path.parent / f"{path.stem}.titles").write_text(text, encoding="utf-8")
    return path


def write_svmlight(path, counts, vocab=None, labels=None) -> Path:
    """Write ``counts`` ``[D, V]`` as ``label id:count ...`` lines with 1-based ids (labels
    default to 0); ``vocab`` goes to ``STEM.vocab`` as ``word count`` lines, as NVDM's files."""
    path, counts = Path(path), sp.csr_matrix(counts)
    labels = np.zeros(counts.shape[0], np.int64) if labels is None else np.asarray(labels)
    lines = [f"{label} {pairs}".rstrip() for label, pairs in zip(labels, _pairs_lines(counts, 1))]
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    if vocab is not None:
        _write_vocab(path.parent / f"{path.stem}.vocab", vocab, counts)
    return path


def save_npz_corpus(path, counts, vocab, titles=None, labels=None, tokens=None) -> Path:
    """Save a corpus as a compressed ``.npz`` (atomically: temp file, then rename) that
    :func:`read_npz` reads back exactly; ``tokens`` keeps word order (for GraphBTM's biterms)."""
    path, counts = Path(path), sp.csr_matrix(counts)
    if counts.shape[1] != len(vocab):
        raise ValueError(f"{path}: {counts.shape[1]} columns but {len(vocab)} vocabulary words.")
    arrays = dict(
        zoo_format=np.array(NPZ_FORMAT), data=counts.data.astype(np.int64),
        indices=counts.indices.astype(np.int32), indptr=counts.indptr.astype(np.int64),
        shape=np.array(counts.shape, np.int64), vocab=np.array([str(w) for w in vocab]),
    )
    if titles is not None:
        arrays["titles"] = np.array([str(t) for t in titles])
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    if tokens is not None:
        arrays["token_offsets"] = np.cumsum([0] + [len(t) for t in tokens]).astype(np.int64)
        arrays["token_ids"] = np.concatenate([np.zeros(0, np.int64)] + [
            np.asarray(t, np.int64) for t in tokens])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_npz(path, vocab=None) -> Corpus:
    """Read a corpus saved by :func:`save_npz_corpus` (or a CSR matrix saved by
    ``scipy.sparse.save_npz``, with ``vocab=`` a list or a file), checking every count."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path}: an empty file (0 bytes), not a .npz corpus.")
    try:  # our own handle: NumPy leaves its own open when the archive does not parse
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as f:
            z = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz archive ({exc}).") from exc
    if not z:
        raise ValueError(f"{path}: an empty .npz archive (no arrays); not a sparse corpus.")
    missing = [k for k in ("data", "indices", "indptr", "shape") if k not in z]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; not a sparse corpus.")
    if "vocab" not in z and vocab is None:
        raise ValueError(f"{path}: no 'vocab' array; pass vocab=PATH (one word per line).")
    words = _resolve_vocab(path, vocab, ()) if vocab is not None else [str(w) for w in z["vocab"]]
    (num_docs, num_cols), indptr = (int(s) for s in z["shape"]), z["indptr"]
    if num_cols != len(words) or len(indptr) != num_docs + 1:
        raise ValueError(
            f"{path}: shape {num_docs}x{num_cols} disagrees with indptr ({len(indptr)} entries) "
            f"or the vocabulary ({len(words)} words)."
        )
    data, indices = z["data"].astype(np.float64), z["indices"].astype(np.int64)
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(data):
        raise ValueError(f"{path}: indptr is not a valid CSR row pointer.")
    checks = [
        (np.isnan(data), "NaN count"), (np.isinf(data), "infinite count"),
        (data < 0, "negative count"), (data != np.floor(data), "fractional count"),
        ((indices < 0) | (indices >= num_cols),
         f"word id outside the vocabulary of {num_cols} words"),
    ]
    for bad, problem in checks:
        if bad.any():
            i = int(np.argmax(bad))
            row = int(np.searchsorted(indptr, i, side="right")) - 1
            raise ValueError(
                f"{path}, row {row} (0-based): {problem} (word id {indices[i]}, count {data[i]})."
            )
    counts = sp.csr_matrix((data.astype(np.int64), indices, indptr), shape=(num_docs, num_cols))
    counts.sum_duplicates()
    counts.eliminate_zeros()
    tokens = None
    if "token_ids" in z:
        ids, offsets = z["token_ids"].astype(np.int64), z["token_offsets"].astype(np.int64)
        if len(offsets) != num_docs + 1 or offsets[-1] != len(ids) or np.any(np.diff(offsets) < 0):
            raise ValueError(f"{path}: token_offsets do not fit {num_docs} documents.")
        if np.any((ids < 0) | (ids >= num_cols)):
            raise ValueError(f"{path}: token_ids outside the vocabulary of {num_cols} words.")
        tokens = [ids[offsets[d]:offsets[d + 1]] for d in range(num_docs)]
    titles = [str(t) for t in z["titles"]] if "titles" in z else None
    return Corpus(counts, words, tokens, z.get("labels"), titles, str(path))
