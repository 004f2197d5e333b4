r"""Text corpora as sparse bags of words: the split container, the loaders, the corpus preparation
behind ``zoo data prepare`` (whose parser is in :mod:`zoo.cli_data`).

A corpus is a count matrix :math:`X \in \mathbb{N}^{D \times V}` (documents by vocabulary),
kept as a ``scipy.sparse`` CSR matrix until a batch is needed: :class:`SparseCountsSplit`
materializes only the rows it is asked for, as dense ``float32`` counts. Every loader returns a
:class:`~zoo.data.dataset.Dataset` of kind ``"text"`` with a seeded random train/test split
(``test_fraction=0.2``, ``seed=0``) and ``meta``: ``vocab`` (list of words), ``split``,
``source``, ``dropped_empty`` (documents with no word left, dropped before splitting: nothing is
dropped without this count) and ``labels`` (``{"train": ..., "test": ...}`` or ``None``).

Loaders, through :func:`zoo.data.load`:

- ``load("reuters")`` (the default text dataset): 395 Reuters news stories, vocabulary 4,258,
  bundled as ``bundled/reuters.npz`` (from the ``lda`` package, see ``bundled/README.md``);
- ``load("20news")``: the 20 Newsgroups bag of words of NVDM [2] (7,505 documents, 2,000 words)
  from ``$ZOO_20NEWS_DIR`` or ``../shared/data/20news/`` beside the repository;
- ``load("x.ldac", vocab=None)``, ``load("x.feat" | "x.svmlight", vocab=None)``, ``load("x.npz")``:
  the formats of :mod:`zoo.data.text_formats` (LDA-C and svmlight lose word order);
- ``load("x.txt", vocab_size=2000, stop_words="english", min_df=1, max_df=1.0)``: raw text, one
  document per line, counted by scikit-learn's ``CountVectorizer`` [1]; token sequences (word ids
  in order, words outside the vocabulary dropped) are kept in ``split.tokens``.

**References:**

1. *Scikit-learn: Machine Learning in Python*, F. Pedregosa et al. (2011), JMLR 12
   (``sklearn.feature_extraction.text.CountVectorizer``)
2. *Neural Variational Inference for Text Processing*, Y. Miao, L. Yu, P. Blunsom (2016),
   arXiv:1511.06038
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from zoo.data.dataset import Dataset, Split, TensorSplit, train_test_indices
from zoo.data.registry import register_dataset, register_format
from zoo.data.text_formats import (
    Corpus,
    read_ldac,
    read_lines,
    read_npz,
    read_svmlight,
    read_vocab,
    save_npz_corpus,
)

logger = logging.getLogger(__name__)

BUNDLED = Path(__file__).parent / "bundled"
#: Where ``load("20news")`` looks when ``$ZOO_20NEWS_DIR`` is not set.
DEFAULT_20NEWS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "20news"


class SparseCountsSplit(Split):
    """Documents of a bag-of-words corpus, sparse until a batch is materialized.

    :param counts: ``[D, V]`` word counts (anything ``scipy.sparse.csr_matrix`` accepts)
    :param list tokens: ``D`` int64 arrays of word ids in document order, or ``None`` when the
        source has no order (LDA-C, svmlight)
    :param labels: ``[D]`` labels or ``None``
    :param list titles: ``D`` titles or ``None``
    """

    def __init__(self, counts, tokens=None, labels=None, titles=None):
        self.counts = sp.csr_matrix(counts, dtype=np.int64)  # [D, V]
        num_docs = self.counts.shape[0]
        for name, value in (("tokens", tokens), ("labels", labels), ("titles", titles)):
            if value is not None and len(value) != num_docs:
                raise ValueError(f"{len(value)} {name} for {num_docs} documents.")
        self.tokens = tokens
        self.labels = None if labels is None else np.asarray(labels)
        self.titles = titles

    def __len__(self):
        return self.counts.shape[0]

    @property
    def num_features(self):
        """The vocabulary size V."""
        return self.counts.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        """Document lengths :math:`N_d = \\sum_v x_{dv}`, ``[D]`` int64."""
        return np.asarray(self.counts.sum(axis=1)).ravel()

    #: :meth:`to` holds the counts dense on the device up to this many bytes of float32
    dense_limit_bytes = 512 * 2**20

    def batch(self, index, generator=None):
        """Dense float32 counts ``[len(index), V]`` of rows ``index`` (``generator`` unused:
        counts are not resampled)."""
        index = torch.as_tensor(index, dtype=torch.long).cpu().numpy()
        return torch.from_numpy(self.counts[index].toarray().astype(np.float32))

    def to(self, device) -> Split:
        """The split as the engine trains on it: when its dense float32 counts fit in
        :attr:`dense_limit_bytes` (20 Newsgroups' 6,004 x 2,000 take 48 MB), a
        :class:`~zoo.data.dataset.TensorSplit` holding them on ``device``, whose batches are
        row gathers (0.1 ms for 200 x 2,000 on one core, against 0.4 ms for densifying CSR
        rows per batch; on a GPU no copy from the host at all); larger corpora stay sparse and
        each batch is densified, then copied."""
        device = torch.device(device)
        if 4 * len(self) * self.num_features > self.dense_limit_bytes:
            return super().to(device)
        if getattr(self, "_dense", None) is None:  # built once per split, kept on the host
            self._dense = TensorSplit(torch.from_numpy(self.counts.toarray().astype(np.float32)))
        return self._dense.to(device)  # [D, V]

    def subset(self, index) -> SparseCountsSplit:
        """The documents ``index`` (an integer array) as a new split."""
        index = np.asarray(index, dtype=np.int64)

        def pick(xs):
            return None if xs is None else [xs[i] for i in index]

        labels = None if self.labels is None else self.labels[index]
        return SparseCountsSplit(self.counts[index], pick(self.tokens), labels, pick(self.titles))


def corpus_counts(dataset: Dataset, part: str = "all"):
    """The reference corpus for NPMI: ``(counts, tokens)`` of ``part`` = ``"all"`` (training then
    held-out documents, the default reference), ``"train"`` or ``"test"``."""
    splits = {"all": [dataset.train, dataset.test], "train": [dataset.train],
              "test": [dataset.test]}
    if part not in splits:
        raise ValueError(f"part must be 'all', 'train' or 'test', got {part!r}")
    chosen = splits[part]
    counts = sp.vstack([s.counts for s in chosen], format="csr")
    has_tokens = all(s.tokens is not None for s in chosen)
    tokens = [t for s in chosen for t in s.tokens] if has_tokens else None
    return counts, tokens


def text_dataset(name, corpus: Corpus, test_fraction=0.2, seed=0) -> Dataset:
    """Drop empty documents (counting them), split the rest at random (seeded) into train and
    test, and wrap both as a text :class:`Dataset`."""
    full = SparseCountsSplit(corpus.counts, corpus.tokens, corpus.labels, corpus.titles)
    keep = np.flatnonzero(full.lengths > 0)
    dropped = len(full) - len(keep)
    if dropped:
        logger.info("%s: dropped %d empty document(s) of %d.", corpus.source, dropped, len(full))
    if len(keep) < 2:
        raise ValueError(
            f"{corpus.source}: {len(keep)} non-empty document(s) (after dropping {dropped} "
            f"empty ones); a train/test split needs at least 2."
        )
    train_idx, test_idx = train_test_indices(len(keep), test_fraction, seed)
    train, test = full.subset(keep[train_idx]), full.subset(keep[test_idx])
    percent = round(100 * len(test_idx) / len(keep))
    labels = None if full.labels is None else {"train": train.labels, "test": test.labels}
    meta = dict(
        vocab=list(corpus.vocab), source=str(corpus.source), dropped_empty=int(dropped),
        split=f"random {100 - percent}/{percent} ({len(train)}/{len(test)}), seed {seed}",
        labels=labels,
    )
    return Dataset(name, train, test, kind="text", meta=meta)


def read_text(path, vocab_size=2000, stop_words="english", min_df=1, max_df=1.0, vocab=None):
    """Count raw text (one document per line) with ``CountVectorizer``, keeping the
    ``vocab_size`` most frequent words that pass ``min_df``/``max_df`` (scikit-learn's meaning:
    an int is a number of documents, a float a fraction), or exactly the words ``vocab`` (a list
    or a file) when given. Keeps each document's word ids in order (out-of-vocabulary dropped)."""
    from sklearn.feature_extraction.text import CountVectorizer

    path = Path(path)
    docs = read_lines(path)
    if isinstance(vocab, (str, os.PathLike)):
        vocab = read_vocab(vocab)
    analyzer = CountVectorizer(stop_words=stop_words).build_analyzer()
    return count_words([analyzer(doc) for doc in docs], vocab_size, min_df, max_df, vocab,
                       source=path)


def count_words(words: list[list[str]], vocab_size=2000, min_df=1, max_df=1.0, vocab=None,
                source="") -> Corpus:
    """The :class:`~zoo.data.text_formats.Corpus` of documents given as their words in order:
    counts over the ``vocab_size`` most frequent words that pass ``min_df``/``max_df``, or
    over exactly ``vocab``, and each document's word ids in order (out-of-vocabulary dropped).
    ``source`` names the input in errors."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(
        analyzer=lambda ws: ws, vocabulary=vocab, max_features=None if vocab else vocab_size,
        min_df=min_df, max_df=max_df,
    )
    try:
        counts = vectorizer.fit_transform(words)
    except ValueError as exc:
        raise ValueError(f"{source}: cannot build a vocabulary ({exc}).") from exc
    index = vectorizer.vocabulary_
    tokens = [np.array([index[w] for w in ws if w in index], np.int64) for ws in words]
    vocab = [str(w) for w in vectorizer.get_feature_names_out()]
    return Corpus(sp.csr_matrix(counts, dtype=np.int64), vocab, tokens, source=str(source))


@register_format(".ldac")
def load_ldac(path, vocab=None, test_fraction=0.2, seed=0) -> Dataset:
    """An LDA-C file (see :func:`~zoo.data.text_formats.read_ldac`); word order is lost."""
    return text_dataset(Path(path).stem, read_ldac(path, vocab), test_fraction, seed)


@register_format(".feat", ".svmlight")
def load_svmlight(path, vocab=None, test_fraction=0.2, seed=0) -> Dataset:
    """An svmlight/NVDM file (1-based ids, see :func:`~zoo.data.text_formats.read_svmlight`);
    word order is lost, labels are kept."""
    return text_dataset(Path(path).stem, read_svmlight(path, vocab), test_fraction, seed)


@register_format(".npz")
def load_npz(path, vocab=None, test_fraction=0.2, seed=0) -> Dataset:
    """A corpus saved by :func:`~zoo.data.text_formats.save_npz_corpus` (``zoo data prepare``)."""
    return text_dataset(Path(path).stem, read_npz(path, vocab), test_fraction, seed)


@register_format(".txt")
def load_text(path, vocab_size=2000, stop_words="english", min_df=1, max_df=1.0, vocab=None,
              test_fraction=0.2, seed=0) -> Dataset:
    """Raw text, one document per line (see :func:`read_text`); keeps token sequences."""
    corpus = read_text(path, vocab_size, stop_words, min_df, max_df, vocab)
    return text_dataset(Path(path).stem, corpus, test_fraction, seed)


@register_dataset("reuters")
def load_reuters(test_fraction=0.2, seed=0) -> Dataset:
    """395 Reuters stories (Aug 1996 - Aug 1997), vocabulary 4,258, with titles; the sample that
    the ``lda`` package (MPL-2.0) distributes, bundled with the zoo. Word order is lost."""
    corpus = read_npz(BUNDLED / "reuters.npz")
    corpus.source = "reuters (bundled, from lda 3.0.2's tests/reuters.ldac)"
    return text_dataset("reuters", corpus, test_fraction, seed)


@register_dataset("20news")
def load_20news(test_fraction=0.2, seed=0) -> Dataset:
    """NVDM's 20 Newsgroups bag of words (``20news.feat`` + ``vocab.txt``) from the folder
    ``$ZOO_20NEWS_DIR`` or ``../shared/data/20news/`` beside the repository."""
    folder = Path(os.environ.get("ZOO_20NEWS_DIR") or DEFAULT_20NEWS_DIR)
    if not (folder / "20news.feat").exists() or not (folder / "vocab.txt").exists():
        raise ValueError(
            f"20news: no 20news.feat and vocab.txt in {folder}; set ZOO_20NEWS_DIR to the folder "
            f"that holds them, or load the .feat file by its path."
        )
    corpus = read_svmlight(folder / "20news.feat", folder / "vocab.txt")
    return text_dataset("20news", corpus, test_fraction, seed)


def prepare_corpus(input_path, out_path, vocab_size=2000, stop_words="english", min_df=1,
                   max_df=1.0) -> dict:
    """Turn raw text (one document per line) into a ``.npz`` corpus with vocabulary and token
    sequences, as ``zoo data prepare`` does. Empty documents are kept in the file (the loader
    drops and counts them). Returns a summary dict."""
    corpus = read_text(input_path, vocab_size, stop_words, min_df, max_df)
    save_npz_corpus(out_path, corpus.counts, corpus.vocab, tokens=corpus.tokens)
    lengths = np.asarray(corpus.counts.sum(axis=1)).ravel()
    return dict(
        input=str(input_path), output=str(out_path), documents=int(corpus.counts.shape[0]),
        empty_documents=int((lengths == 0).sum()), vocab_size=len(corpus.vocab),
        tokens=int(lengths.sum()), stop_words=stop_words, min_df=min_df, max_df=max_df,
    )
