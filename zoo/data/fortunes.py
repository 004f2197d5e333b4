r"""The ``fortune`` databases: short, labeled texts with their word order, for short-text topic
models (GraphBTM, BTM).

A fortune file (the ``strfile`` format of BSD ``fortune(6)`` [1]) is plain text whose entries are
separated by lines holding a single ``%``; each file is one category (``computers``, ``love``,
``science``, ...). Debian's package ``fortunes`` installs 43 of them under
``/usr/share/games/fortunes/`` (about 16,000 texts), beside ``.dat`` index files and ``.u8``
links, which the reader skips.

``load("fortunes", folder=None, ...)`` reads every category file of ``folder`` (default:
``$ZOO_FORTUNES_DIR``, else ``/usr/share/games/fortunes``), labels each text with its file's
category (``meta["label_names"]``), counts words with scikit-learn's ``CountVectorizer`` (English
stop words, the ``vocab_size`` most frequent words seen in at least ``min_df`` texts) and keeps
each text's word ids in order (``split.tokens``), which biterms need. Texts left without a word
are dropped and counted (``meta["dropped_empty"]``). Terminal overstrikes (``c\bc``, ``_\bc``,
how the files print bold and underline) are removed. A file that is not UTF-8 raises a
``ValueError`` naming the file and the line.

**References:**

1. ``strfile(8)``, ``fortune(6)``, BSD games; Debian package ``fortunes``
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from zoo.data.dataset import Dataset
from zoo.data.registry import register_dataset
from zoo.data.text import count_words, text_dataset
from zoo.data.text_formats import Corpus

#: where ``load("fortunes")`` looks when neither ``folder`` nor ``$ZOO_FORTUNES_DIR`` is given
DEFAULT_FORTUNES_DIR = Path("/usr/share/games/fortunes")
HOW_TO_GET = ("install Debian's package `fortunes` (apt-get install fortunes: it puts the files "
              "in /usr/share/games/fortunes), or set ZOO_FORTUNES_DIR to a folder of fortune "
              "files (entries separated by lines holding only '%')")
_OVERSTRIKE = re.compile(".\x08")


def read_fortunes(path) -> list[str]:
    """The entries of one fortune file, in order: the text between ``%`` lines, overstrikes
    removed, whitespace kept as it is inside an entry; empty entries are skipped."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text ({e.reason}).") from None
    entries, lines = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append("\n".join(lines))
            lines = []
        else:
            lines.append(line)
    entries.append("\n".join(lines))
    return [_OVERSTRIKE.sub("", e).strip() for e in entries if e.strip()]


def fortune_files(folder) -> list[Path]:
    """The category files of a fortune folder, sorted by name: regular files, not the
    ``.dat`` indexes, not symbolic links (Debian's ``.u8`` names), not hidden files."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.is_symlink() and p.suffix != ".dat"
                  and not p.name.startswith("."))


#: words of two letters or more (scikit-learn's default pattern without digits and underscores,
#: which in fortunes are mostly years, prices and ASCII-art rules)
WORDS = r"(?u)\b[^\W\d_][^\W\d_]+\b"


def count_texts(texts, vocab_size=2000, stop_words="english", min_df=1, max_df=1.0,
                token_pattern=WORDS, source="") -> Corpus:
    """Count ``texts`` (a list of strings) with ``CountVectorizer``, keeping the ``vocab_size``
    most frequent words that pass ``min_df`` / ``max_df``, and each text's word ids in order
    (words outside the vocabulary dropped)."""
    from sklearn.feature_extraction.text import CountVectorizer

    analyzer = CountVectorizer(stop_words=stop_words, token_pattern=token_pattern).build_analyzer()
    return count_words([analyzer(t) for t in texts], vocab_size, min_df, max_df, source=source)


@register_dataset("fortunes")
def load_fortunes(folder=None, categories=None, vocab_size=2000, stop_words="english",
                  min_df=2, max_df=0.5, test_fraction=0.2, seed=0) -> Dataset:
    """The fortune files of ``folder`` as a labeled short-text corpus (see the module
    docstring); ``categories``: the file names to read (default: all)."""
    folder = Path(folder or os.environ.get("ZOO_FORTUNES_DIR") or DEFAULT_FORTUNES_DIR)
    if not folder.is_dir():
        raise ValueError(f"fortunes: no folder {folder}; {HOW_TO_GET}.")
    files = fortune_files(folder)
    if categories is not None:
        wanted = set(categories)
        missing = sorted(wanted - {p.name for p in files})
        if missing:
            raise ValueError(f"fortunes: no category file(s) {', '.join(missing)} in {folder}; "
                             f"it has {', '.join(p.name for p in files)}.")
        files = [p for p in files if p.name in wanted]
    texts, labels, names = [], [], []
    for path in files:
        entries = read_fortunes(path)
        if entries:
            texts += entries
            labels += [len(names)] * len(entries)
            names.append(path.name)
    if not texts:
        raise ValueError(f"fortunes: no fortune file with an entry in {folder}; {HOW_TO_GET}.")
    corpus = count_texts(texts, vocab_size, stop_words, min_df, max_df, source=folder)
    corpus.labels = np.asarray(labels, dtype=np.int64)
    dataset = text_dataset("fortunes", corpus, test_fraction, seed)
    dataset.meta["label_names"] = names
    return dataset
