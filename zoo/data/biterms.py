r"""Biterms and mini-corpora for GraphBTM: token sequences -> sparse biterm graphs.

A *biterm* is an unordered pair of word tokens that occur within a sliding window of ``window``
tokens of each other (BTM [1] takes every pair of a short text; GraphBTM [2] uses windows of 30,
which is the same thing for texts shorter than the window). Positions :math:`a < b` pair when
:math:`b - a < \text{window}`, each position pair counted once. A set of documents gives a
symmetric count matrix :math:`A \in \mathbb{N}^{V \times V}`: for :math:`i \ne j`,
:math:`A_{ij} = A_{ji}` = the number of biterms :math:`\{i, j\}`; :math:`A_{ii}` = the number of
biterms :math:`\{i, i\}` (a word paired with a repeat of itself).

**Mini-corpora.** GraphBTM's data point is the merged biterm graph of a few documents (3 in the
paper; the reference code's loader samples 10 at random per item, and its dict merge keeps one
document's count of a shared pair, where we sum). :class:`BitermSplit` fixes a seeded partition
of the documents into groups of ``docs_per_corpus``, so that held-out evaluation always scores
the same graphs; with ``resample=True`` (the training split) every batch instead draws fresh
random groups from the engine's generator, as the reference does.

**Memory.** A batch is a *sparse* COO tensor ``[B, V, V]`` (float32, coalesced): a dense one is
:math:`4BV^2` bytes, 1.6 GB for ``B = 100``, ``V = 2000`` (and the engine evaluates in batches of
1,000). A mini-corpus of 3 documents of 100 tokens has at most :math:`3 \cdot 100 \cdot 29`
biterms, so its graph has under 20k non-zeros: a few hundred kB per batch. Per-document biterm
matrices are built once (``scipy.sparse``, :math:`O(\text{tokens} \times \text{window})`).

**Word order.** Biterms need token order: LDA-C and svmlight files (and so the bundled Reuters
and 20 Newsgroups bags of words) keep none, and :func:`biterm_dataset` refuses them rather than
invent an order. Raw text (``.txt``) and ``zoo data prepare`` ``.npz`` corpora keep it.

**References:**

1. *A Biterm Topic Model for Short Texts*, X. Yan, J. Guo, Y. Lan, X. Cheng, WWW 2013
2. *GraphBTM: Graph Enhanced Autoencoded Variational Inference for Biterm Topic Model*,
   Q. Zhu, Z. Feng, X. Li, EMNLP 2018
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from zoo.data.dataset import Dataset, Split


def extract_biterms(tokens, window: int = 30) -> np.ndarray:
    """Biterms ``[n, 2]`` (word ids, as they appear: earlier token first) of one token sequence:
    every position pair ``a < b`` with ``b - a < window``."""
    if window < 2:
        raise ValueError(f"window must be at least 2 (a biterm spans two tokens), got {window}.")
    tokens = np.asarray(tokens, dtype=np.int64)
    pairs = [np.stack([tokens[:-off], tokens[off:]], axis=1)
             for off in range(1, min(window, len(tokens)))]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def biterm_entries(tokens, vocab_size: int, window: int = 30) -> np.ndarray:
    """Uncoalesced entries ``[2, m]`` (row, column) of a document's biterm matrix, each worth 1:
    a biterm ``{i, j}`` gives ``(i, j)`` and ``(j, i)``, a biterm ``{i, i}`` gives ``(i, i)``
    once. Summing duplicates (``coalesce``) gives :func:`biterm_matrix`."""
    b = extract_biterms(tokens, window)
    if b.size and (b.min() < 0 or b.max() >= vocab_size):
        raise ValueError(f"token ids must lie in 0..{vocab_size - 1}, got {b.min()}..{b.max()}.")
    off = b[b[:, 0] != b[:, 1]]
    return np.concatenate([b.T, off[:, ::-1].T], axis=1)


def biterm_matrix(tokens, vocab_size: int, window: int = 30) -> sp.csr_matrix:
    """The symmetric biterm count matrix ``[V, V]`` of one token sequence (see module doc)."""
    rows, cols = biterm_entries(tokens, vocab_size, window)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(vocab_size, vocab_size))


def endpoint_counts(graphs: torch.Tensor) -> torch.Tensor:
    r"""How often each word is a biterm endpoint, :math:`c = A\mathbf{1} + \operatorname{diag}A`,
    for a sparse (or dense) batch ``[B, V, V]``; returns dense ``[B, V]``. A biterm
    :math:`\{i, j\}` adds one to :math:`c_i` and one to :math:`c_j` (two to :math:`c_i` if
    :math:`i = j`)."""
    if graphs.is_sparse:
        graphs = graphs.coalesce()
        (b, i, j), v = graphs.indices(), graphs.values()
        out = torch.zeros(graphs.shape[:2], dtype=v.dtype, device=v.device)
        out.index_put_((b, i), v, accumulate=True)
        on_diag = i == j
        out.index_put_((b[on_diag], i[on_diag]), v[on_diag], accumulate=True)
        return out
    return graphs.sum(-1) + graphs.diagonal(dim1=-2, dim2=-1)


def graph_biterms(graphs: torch.Tensor):
    r"""The biterms of a sparse (or dense) batch ``[B, V, V]``, each once: ``(b, i, j, count)``,
    1-d tensors over the distinct biterms, :math:`i \le j` (the symmetric matrix holds a pair
    :math:`i \ne j` twice, a repeated word once on the diagonal)."""
    graphs = (graphs if graphs.is_sparse else graphs.to_sparse()).coalesce()
    (b, i, j), count = graphs.indices(), graphs.values()
    once = i <= j
    return b[once], i[once], j[once], count[once]


def stack_sparse(matrices, vocab_size: int) -> torch.Tensor:
    """A list of ``scipy.sparse`` ``[V, V]`` matrices -> one coalesced COO tensor ``[B, V, V]``."""
    entries = []
    for m in matrices:
        m = m.tocoo()
        entries.append((np.stack([m.row, m.col]), m.data))
    return _stack_entries(entries, vocab_size)


def _stack_entries(entries, vocab_size: int) -> torch.Tensor:
    """``[(index [2, m_b], values [m_b])]`` per graph -> coalesced COO ``[B, V, V]`` (duplicate
    entries are summed)."""
    index = np.concatenate([e[0] for e in entries], axis=1)
    batch = np.concatenate([np.full(e[0].shape[1], n) for n, e in enumerate(entries)])
    values = np.concatenate([e[1] for e in entries]).astype(np.float32)
    index = torch.from_numpy(np.concatenate([batch[None], index]).astype(np.int64))
    size = (len(entries), vocab_size, vocab_size)
    return torch.sparse_coo_tensor(index, torch.from_numpy(values), size,
                                   check_invariants=False).coalesce()


class BitermSplit(Split):
    """Mini-corpora of a list of token sequences, served as sparse biterm graphs.

    :param tokens: ``D`` int arrays of word ids in document order
    :param int vocab_size: V
    :param int window: biterm window (GraphBTM: 30)
    :param int docs_per_corpus: documents merged into one data point (GraphBTM: 3)
    :param bool resample: draw fresh random groups per batch from the generator (training)
    :param int seed: seed of the fixed partition
    """

    def __init__(self, tokens, vocab_size: int, window: int = 30, docs_per_corpus: int = 3,
                 resample: bool = False, seed: int = 0):
        if docs_per_corpus < 1:
            raise ValueError(f"docs_per_corpus must be positive, got {docs_per_corpus}.")
        self.vocab_size, self.window = int(vocab_size), int(window)
        self.docs_per_corpus, self.resample = int(docs_per_corpus), bool(resample)
        self.tokens = list(tokens)  # the documents themselves: topic coherence's reference
        self.doc_entries = [biterm_entries(t, vocab_size, window) for t in tokens]
        self.num_biterms = np.array([len(extract_biterms(t, window)) for t in tokens])
        order = np.random.default_rng(seed).permutation(len(tokens))
        self.groups = [order[i:i + docs_per_corpus] for i in range(0, len(order), docs_per_corpus)]

    def __len__(self):
        return len(self.groups)

    @property
    def num_features(self):
        """The vocabulary size V."""
        return self.vocab_size

    def corpus_entries(self, docs):
        """Uncoalesced ``(index [2, m], values [m])`` of the merged graph of ``docs``."""
        index = np.concatenate([self.doc_entries[d] for d in docs], axis=1)
        return index, np.ones(index.shape[1], dtype=np.float32)

    @property
    def uses_generator(self) -> bool:
        return self.resample

    def batch(self, index, generator=None):
        """Sparse COO ``[len(index), V, V]`` float32 biterm graphs of the mini-corpora ``index``
        (fresh random groups of documents when ``resample``), on the CPU; ``generator`` is a
        CPU one (through :class:`~zoo.data.dataset.DeviceSplit`, one derived from the
        device's generator)."""
        index = torch.as_tensor(index).tolist()
        if self.resample:
            draws = torch.randint(len(self.doc_entries), (len(index), self.docs_per_corpus),
                                  generator=generator).tolist()
        else:
            draws = [self.groups[i].tolist() for i in index]
        return _stack_entries([self.corpus_entries(d) for d in draws], self.vocab_size)

    def dense(self):
        """Refused: the split's batches are sparse biterm graphs; use ``split.batch(index)``."""
        raise ValueError("BitermSplit batches are sparse [B, V, V] graphs; a dense copy of the "
                         "whole split would take 4 * B * V^2 bytes. Use split.batch(index).")


def biterm_dataset(dataset: Dataset, window: int = 30, docs_per_corpus: int = 3,
                   seed: int = 0) -> Dataset:
    """A text :class:`~zoo.data.dataset.Dataset` whose splits keep token sequences -> a Dataset
    of :class:`BitermSplit` mini-corpora (training split resampled per batch)."""
    for part in ("train", "test"):
        if getattr(dataset, part).tokens is None:
            raise ValueError(
                f"{dataset.name}: the {part} split has no token sequences (LDA-C and svmlight "
                f"keep no word order), and biterms need order. Load raw text (.txt, one document "
                f"per line) or a `zoo data prepare` .npz instead."
            )
    v = dataset.num_features
    train = BitermSplit(dataset.train.tokens, v, window, docs_per_corpus, True, seed)
    test = BitermSplit(dataset.test.tokens, v, window, docs_per_corpus, False, seed)
    meta = {**dataset.meta, "biterms": dict(window=window, docs_per_corpus=docs_per_corpus)}
    return Dataset(f"{dataset.name}-biterms", train, test, "graph", meta)
