"""Topic metrics against values computed by hand on tiny corpora, and the topic figures."""

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from zoo.data import load
from zoo.data.text import corpus_counts
from zoo.metrics import (
    npmi,
    per_document_perplexity,
    perplexity,
    top_word_ids,
    top_words,
    topic_diversity,
)
from zoo.plots import plot_document_topics, plot_topic_top_words, plot_training_curves

A, B, C, D, E = range(5)
# Five documents over the words a..e (document frequencies: a 3, b 3, c 2, d 2, e 1; of 5).
DOCS = [[A, B], [A, B, C], [A, C], [B, D], [D, E, D]]


def _counts(docs, num_words=5):
    x = np.zeros((len(docs), num_words))
    for d, doc in enumerate(docs):
        np.add.at(x[d], doc, 1)
    return sp.csr_matrix(x)


def _npmi(p_ij, p_i, p_j):
    return math.log(p_ij / (p_i * p_j)) / -math.log(p_ij)


def test_perplexity_by_hand():
    bounds, lengths = torch.tensor([-10.0, -20.0]), torch.tensor([2, 3])
    assert perplexity(bounds, lengths) == pytest.approx(math.exp(30 / 5))
    assert per_document_perplexity(bounds, lengths) == pytest.approx(math.exp((5 + 20 / 3) / 2))
    with pytest.raises(ValueError, match="2 bounds but 3 document lengths"):
        perplexity([-1.0, -2.0], [1, 2, 3])
    with pytest.raises(ValueError, match="bound of document 1 is not finite"):
        perplexity([-1.0, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="document 0 is empty"):
        per_document_perplexity([0.0, -2.0], [0, 2])


def test_npmi_document_cooccurrence_by_hand():
    topics = np.array([[A, B, C], [D, E, A]])
    # topic 0: a&b in docs 0,1 (2 of 5); a&c in docs 1,2 (2/5); b&c in doc 1 (1/5)
    t0 = (_npmi(2 / 5, 3 / 5, 3 / 5) + _npmi(2 / 5, 3 / 5, 2 / 5) + _npmi(1 / 5, 3 / 5, 2 / 5)) / 3
    # topic 1: d&e in doc 4 (1/5); d&a and e&a never together: -1 each
    t1 = (_npmi(1 / 5, 2 / 5, 1 / 5) - 1 - 1) / 3
    result = npmi(topics, _counts(DOCS), top_n=3)
    assert result.per_topic == pytest.approx([t0, t1])
    assert result.mean == pytest.approx((t0 + t1) / 2)
    # the same from a dense matrix, from token lists, from a float topic-word matrix
    assert npmi(topics, _counts(DOCS).toarray(), top_n=3).mean == pytest.approx(result.mean)
    assert npmi(topics, [np.array(d) for d in DOCS], top_n=3).mean == pytest.approx(result.mean)
    weights = np.array([[0.5, 0.3, 0.15, 0.05, 0.0], [0.1, 0.0, 0.0, 0.6, 0.3]])
    assert npmi(weights, _counts(DOCS), top_n=3).mean == pytest.approx(result.mean)
    # a pair present in every document scores 1
    assert npmi(np.array([[A, B]]), _counts([[A, B], [A, B, C]]), top_n=2).mean == 1.0


def test_npmi_sliding_window_by_hand():
    docs = [np.array([A, B, C, D]), np.array([B]), np.array([], dtype=np.int64)]
    # windows of 2: {a,b} {b,c} {c,d} and the short document {b}; the empty one has none: 4
    expected = (_npmi(1 / 4, 1 / 4, 3 / 4) - 1 + _npmi(1 / 4, 3 / 4, 2 / 4)) / 3
    result = npmi(np.array([[A, B, C]]), docs, top_n=3, mode="window", window=2)
    assert result.mean == pytest.approx(expected)


def test_npmi_window_matches_a_direct_count():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 12, size=n) for n in rng.integers(0, 25, size=30)]
    topics = np.array([rng.permutation(12)[:6] for _ in range(4)])
    windows = [set(doc[s:s + 5]) for doc in docs if len(doc)
               for s in range(max(1, len(doc) - 4))]
    expected = []
    for row in topics:
        scores = []
        for i, j in itertools.combinations(row, 2):
            p_ij = sum(i in w and j in w for w in windows) / len(windows)
            p_i, p_j = (sum(v in w for w in windows) / len(windows) for v in (i, j))
            scores.append(-1.0 if p_ij == 0 else _npmi(p_ij, p_i, p_j))
        expected.append(np.mean(scores))
    result = npmi(topics, docs, top_n=6, mode="window", window=5)
    assert result.per_topic == pytest.approx(expected)


def test_npmi_refuses_bad_input():
    counts = _counts(DOCS)
    with pytest.raises(ValueError, match=r"topic 0 repeats a word among its top 3"):
        npmi(np.array([[A, B, A]]), counts, top_n=3)
    with pytest.raises(ValueError, match=r"top word ids must lie in 0..4"):
        npmi(np.array([[A, 7]]), counts, top_n=2)
    with pytest.raises(ValueError, match=r"top_n=3 but each topic lists only 2 word ids"):
        npmi(np.array([[A, B]]), counts, top_n=3)
    with pytest.raises(ValueError, match=r"mode='window' needs token sequences"):
        npmi(np.array([[A, B]]), counts, top_n=2, mode="window")
    with pytest.raises(ValueError, match=r"mode must be 'document' or 'window'"):
        npmi(np.array([[A, B]]), counts, top_n=2, mode="sentence")


def test_npmi_of_a_dataset_uses_the_whole_corpus():
    data = load("reuters")
    top = np.argsort(-np.asarray(corpus_counts(data)[0].sum(axis=0)).ravel())[:10][None]
    whole = npmi(top, data)
    assert whole.mean == pytest.approx(npmi(top, corpus_counts(data)[0]).mean)
    assert npmi(top, data.test).mean != whole.mean
    assert -1.0 <= whole.mean <= 1.0


def test_topic_diversity_and_top_words_by_hand():
    # 5 distinct words among the 2 x 3 top words
    assert topic_diversity(np.array([[0, 1, 2], [2, 3, 4]]), top_k=3) == pytest.approx(5 / 6)
    topic_word = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.4, 0.1]])
    assert top_word_ids(topic_word, 3).tolist() == [[1, 3, 2], [2, 0, 1]]  # tie: smaller id
    assert top_words(topic_word, ["w", "x", "y", "z"], 2) == [["x", "z"], ["y", "w"]]
    assert topic_diversity(topic_word, top_k=2) == pytest.approx(4 / 4)
    assert topic_diversity(topic_word, top_k=3) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="top_k=25 but each topic lists only 3"):
        topic_diversity(np.array([[0, 1, 2]]))


def _png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_topic_figures_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    topic_word = rng.dirichlet(np.ones(30), size=6)
    vocab = [f"word{i}" for i in range(30)]
    figures = [
        plot_topic_top_words(topic_word, vocab, n_words=8, path=tmp_path / "topics.png"),
        plot_document_topics(rng.dirichlet(np.ones(6), size=40), path=tmp_path / "docs.png"),
        plot_training_curves(
            [dict(epoch=e, train_loss=100 - e, heldout_elbo=-110 + e, perplexity=900 - 10 * e,
                  npmi=None if e % 2 else 0.1 * e) for e in range(5)],
            path=tmp_path / "curves.png"),
    ]
    for name in ("topics.png", "docs.png", "curves.png"):
        assert _png(tmp_path / name)
    assert len(figures[2].axes) == 4
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 3.0}\n'
                                            '{"epoch": 2, "train_loss": 2.0}\n')
    figures.append(plot_training_curves(str(tmp_path / "metrics.jsonl")))
    assert len(figures[3].axes) == 1
    with pytest.raises(ValueError, match="topic_word must be"):
        plot_topic_top_words(topic_word, vocab[:5])
    for fig in figures:
        plt.close(fig)
