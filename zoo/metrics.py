r"""Topic-model metrics: perplexity from a bound, NPMI coherence, topic diversity, top words.

**Perplexity.** From per-document log-likelihood bounds :math:`b_d \le \log p(x_d)` (held-out
ELBOs, or importance-sampled estimates) and document lengths :math:`N_d`, the corpus form [1, 2]

.. math:: \mathrm{ppl} = \exp\Big(-\frac{\sum_d b_d}{\sum_d N_d}\Big)

(an upper bound on the true perplexity when :math:`b_d` is a lower bound), and the per-document
form :math:`\exp(-\frac1D \sum_d b_d / N_d)` that NVDM and AVITM also print. Say whether the bound
includes the multinomial coefficient :math:`\log(N_d! / \prod_v x_{dv}!)`: it changes the number.

**NPMI** [3, 4]. For two words, with probabilities estimated over a reference corpus,

.. math:: \mathrm{NPMI}(w_i, w_j) = \frac{\log \frac{P(w_i, w_j)}{P(w_i) P(w_j)}}
    {-\log P(w_i, w_j)} \in [-1, 1],

where :math:`P(w_i)` is the fraction of reference documents containing :math:`w_i` and
:math:`P(w_i, w_j)` the fraction containing both (``mode="document"``, as ETM [5] and the zoo's
reported numbers), or the same fractions over sliding windows of ``window`` tokens, each window a
virtual document (``mode="window"``, as gensim's ``c_npmi`` with window 10; a document shorter
than the window is one window). A pair never seen together scores :math:`-1` (the limit of the
formula; Lau et al.'s tool uses 0 instead, which raises scores); a pair always seen together
scores :math:`1`. A topic's coherence is the mean over the :math:`\binom{n}{2}` unordered pairs
of its top ``n`` words; the model's is the mean over topics. The reference corpus matters: the
zoo's default is the whole corpus (training and held-out documents); pass the held-out split
alone to score generalization.

**Topic diversity** [5]: the fraction of unique words among the top :math:`k` words of all
:math:`K` topics, :math:`|\bigcup_k \mathrm{top}_k| / (kK)`, with :math:`k = 25`.

Effective sample size of importance weights lives with the estimators, in :mod:`zoo.infer`.

**References:**

1. *Latent Dirichlet Allocation*, D. M. Blei, A. Y. Ng, M. I. Jordan (2003), JMLR 3
2. *Neural Variational Inference for Text Processing*, Y. Miao, L. Yu, P. Blunsom (2016),
   arXiv:1511.06038
3. *Normalized (Pointwise) Mutual Information in Collocation Extraction*, G. Bouma (2009),
   GSCL
4. *Machine Reading Tea Leaves: Automatically Evaluating Topic Coherence and Topic Model
   Quality*, J. H. Lau, D. Newman, T. Baldwin (2014), EACL
5. *Topic Modeling in Embedding Spaces*, A. B. Dieng, F. J. R. Ruiz, D. M. Blei (2020), TACL 8
   (topic diversity; document co-occurrence NPMI)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def perplexity(bounds, lengths) -> float:
    r"""Corpus perplexity :math:`\exp(-\sum_d b_d / \sum_d N_d)` from per-document bounds
    ``[D]`` (nats) and lengths ``[D]``."""
    bounds, lengths = _check_bounds(bounds, lengths)
    return float(np.exp(-bounds.sum() / lengths.sum()))


def per_document_perplexity(bounds, lengths) -> float:
    r"""Per-document perplexity :math:`\exp(-\frac1D \sum_d b_d / N_d)` (every :math:`N_d > 0`)."""
    bounds, lengths = _check_bounds(bounds, lengths)
    if np.any(lengths == 0):
        raise ValueError(f"document {int(np.argmax(lengths == 0))} is empty (length 0).")
    return float(np.exp(-np.mean(bounds / lengths)))


def _check_bounds(bounds, lengths):
    bounds = _numpy(bounds).astype(np.float64).ravel()
    lengths = _numpy(lengths).astype(np.float64).ravel()
    if bounds.shape != lengths.shape:
        raise ValueError(f"{bounds.size} bounds but {lengths.size} document lengths.")
    if not np.all(np.isfinite(bounds)):
        raise ValueError(f"bound of document {int(np.argmax(~np.isfinite(bounds)))} is not finite.")
    if np.any(lengths < 0) or lengths.sum() <= 0:
        raise ValueError("document lengths must be non-negative with a positive total.")
    return bounds, lengths


def top_word_ids(topic_word, n: int = 10) -> np.ndarray:
    """The ids ``[K, n]`` of each topic's ``n`` heaviest words in a topic-word matrix ``[K, V]``
    (probabilities or unnormalized weights), heaviest first; ties go to the smaller id."""
    topic_word = _numpy(topic_word).astype(np.float64)
    if topic_word.ndim != 2 or not 0 < n <= topic_word.shape[1]:
        raise ValueError(f"need a [topics, vocab] matrix and 0 < n <= vocab, got "
                         f"shape {topic_word.shape} and n={n}.")
    return np.argsort(-topic_word, axis=1, kind="stable")[:, :n]


def top_words(topic_word, vocab, n: int = 10) -> list[list[str]]:
    """Each topic's ``n`` most probable words (a list per topic, most probable first)."""
    return [[vocab[i] for i in row] for row in top_word_ids(topic_word, n)]


def _topics(topics, n: int, name: str) -> np.ndarray:
    """``[K, n]`` top ids from a float topic-word matrix or from integer top-id rows."""
    topics = _numpy(topics)
    if topics.ndim != 2:
        raise ValueError(f"topics must be 2-d ([topics, words]), got shape {topics.shape}.")
    if np.issubdtype(topics.dtype, np.floating):
        return top_word_ids(topics, n)
    if topics.shape[1] < n:
        raise ValueError(f"{name}={n} but each topic lists only {topics.shape[1]} word ids.")
    return topics[:, :n].astype(np.int64)


def topic_diversity(topics, top_k: int = 25) -> float:
    r"""Fraction of unique words among the top ``top_k`` of all topics, :math:`|\cup| / (kK)`.

    :param topics: a topic-word matrix ``[K, V]`` (floating point) or top word ids ``[K, >=k]``
        (integers, most probable first)
    """
    top = _topics(topics, top_k, "top_k")
    return float(np.unique(top).size / top.size)


class NPMI(NamedTuple):
    """The mean NPMI over topics and each topic's mean over its word pairs ``[K]``."""

    mean: float
    per_topic: np.ndarray


def npmi(topics, reference, top_n: int = 10, mode: str = "document", window: int = 10) -> NPMI:
    r"""NPMI coherence of each topic's top ``top_n`` words over a reference corpus.

    :param topics: a topic-word matrix ``[K, V]`` (floating point) or top word ids ``[K, >=n]``
        (integers, most probable first)
    :param reference: ``mode="document"``: a count matrix ``[D, V]`` (sparse or dense), a list
        of token-id arrays, a :class:`~zoo.data.dataset.Dataset` (its whole corpus, training and
        held-out) or one split (e.g. ``dataset.test``); ``mode="window"``: token sequences (a
        list of arrays, or a Dataset or split whose ``tokens`` are not ``None``)
    :param str mode: ``"document"`` or ``"window"`` (boolean sliding windows of ``window`` tokens)
    :returns: :class:`NPMI` ``(mean, per_topic)``
    """
    if mode not in ("document", "window"):
        raise ValueError(f"mode must be 'document' or 'window', got {mode!r}")
    if top_n < 2:
        raise ValueError(f"top_n must be at least 2 (NPMI scores pairs), got {top_n}.")
    counts, tokens = _reference(reference)
    num_words = counts.shape[1] if counts is not None else None
    top = _topics(topics, top_n, "top_n")  # [K, n]
    if num_words is not None and (top.min() < 0 or top.max() >= num_words):
        raise ValueError(
            f"top word ids must lie in 0..{num_words - 1} (the reference's vocabulary)."
        )
    for k, row in enumerate(top):
        if np.unique(row).size != top_n:
            raise ValueError(f"topic {k} repeats a word among its top {top_n}: {row.tolist()}.")
    words = np.unique(top)  # [U] the only columns that matter
    if mode == "window":
        if tokens is None:
            raise ValueError(
                "mode='window' needs token sequences, and this reference has none (LDA-C and "
                "svmlight keep no word order); use mode='document', or a corpus read from raw "
                "text (.txt, or the .npz of `zoo data prepare`)."
            )
        occurs = _window_matrix(tokens, words, window)  # [num_windows, U]
    else:
        if counts is None:
            counts = _token_counts(tokens, int(top.max()) + 1)
        occurs = sp.csr_matrix(counts)[:, words]  # [D, U]
    occurs = (occurs > 0).astype(np.float64)
    num_docs = occurs.shape[0]
    if num_docs == 0:
        raise ValueError("the reference corpus is empty.")
    together = np.asarray((occurs.T @ occurs).todense())  # [U, U], frequencies on the diagonal
    pos = np.searchsorted(words, top)  # [K, n] columns of each topic's words
    i, j = np.triu_indices(top_n, k=1)  # the n(n-1)/2 unordered pairs
    p_ij = together[pos[:, i], pos[:, j]] / num_docs  # [K, P]
    p_i = together[pos[:, i], pos[:, i]] / num_docs
    p_j = together[pos[:, j], pos[:, j]] / num_docs
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.log(p_ij / (p_i * p_j)) / -np.log(p_ij)
    score = np.where(p_ij == 0, -1.0, np.where(p_ij == 1, 1.0, score))
    per_topic = score.mean(axis=1)
    return NPMI(float(per_topic.mean()), per_topic)


def _reference(reference):
    """``(counts or None, tokens or None)`` of a reference corpus given in any accepted form."""
    if hasattr(reference, "train") and hasattr(reference, "test"):  # a Dataset: whole corpus
        parts = [reference.train, reference.test]
        counts = sp.vstack([p.counts for p in parts], format="csr")
        tokens = None if any(p.tokens is None for p in parts) else [
            t for p in parts for t in p.tokens]
        return counts, tokens
    if hasattr(reference, "counts"):  # one split
        return sp.csr_matrix(reference.counts), reference.tokens
    if isinstance(reference, (list, tuple)):
        return None, [np.asarray(_numpy(t), dtype=np.int64) for t in reference]
    return sp.csr_matrix(_numpy(reference) if not sp.issparse(reference) else reference), None


def _token_counts(tokens, num_words: int) -> sp.csr_matrix:
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    flat = np.concatenate([np.zeros(0, np.int64), *tokens])
    num_words = max(num_words, int(flat.max()) + 1 if flat.size else 0)
    rows = np.repeat(np.arange(len(tokens)), lengths)
    return sp.csr_matrix((np.ones_like(flat), (rows, flat)), shape=(len(tokens), num_words))


def _window_matrix(tokens, words: np.ndarray, window: int) -> sp.csr_matrix:
    """Boolean occurrences ``[num_windows, U]`` of ``words`` in every sliding window of
    ``window`` tokens (documents of length ``L`` give ``max(1, L - window + 1)`` windows, empty
    documents none), built with one vectorized pass per offset inside the window."""
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}.")
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)  # [D]
    flat = np.concatenate([np.zeros(0, np.int64), *tokens])  # [T] all tokens
    column = np.full(max(int(flat.max()) + 1 if flat.size else 0, int(words.max()) + 1), -1)
    column[words] = np.arange(len(words))
    flat = column[flat]  # [T] column of each token among `words`, -1 elsewhere
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # [D] first token of each document
    num_windows = np.where(lengths > 0, np.maximum(lengths - window + 1, 1), 0)  # [D]
    doc = np.repeat(np.arange(len(lengths)), num_windows)  # [W] document of each window
    first = starts[doc] + (np.arange(doc.size) - np.repeat(np.cumsum(num_windows) - num_windows,
                                                           num_windows))  # [W] first token
    end = starts[doc] + lengths[doc]  # [W] one past the document's last token
    rows, cols = [], []
    for offset in range(window):
        at = first + offset
        inside = at < end
        at, win = at[inside], np.flatnonzero(inside)
        hit = flat[at] >= 0
        rows.append(win[hit])
        cols.append(flat[at[hit]])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(doc.size, len(words)))
