"""Text corpora: every reader round-trips through its writer, bad input is refused with file,
line and problem, empty documents are dropped and counted, the bundled and shared corpora load."""

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from zoo.data import load
from zoo.data.text import (
    DEFAULT_20NEWS_DIR,
    SparseCountsSplit,
    corpus_counts,
    prepare_corpus,
    read_text,
)
from zoo.data.text_formats import (
    read_ldac,
    read_npz,
    read_svmlight,
    save_npz_corpus,
    write_ldac,
    write_svmlight,
)

VOCAB = ["apple", "banana", "cherry", "date", "elder"]
COUNTS = sp.csr_matrix(np.array([[1, 0, 2, 0, 0], [0, 3, 0, 0, 1], [4, 1, 1, 1, 1]]))


def _same(a, b):
    return a.shape == b.shape and (sp.csr_matrix(a) != sp.csr_matrix(b)).nnz == 0


def test_ldac_round_trip(tmp_path):
    path = write_ldac(tmp_path / "c.ldac", COUNTS, VOCAB, titles=["one", "two", "three"])
    assert path.read_text().splitlines()[0] == "2 0:1 2:2"
    corpus = read_ldac(path)  # finds c.vocab and c.titles beside it
    assert _same(corpus.counts, COUNTS) and corpus.vocab == VOCAB and corpus.tokens is None
    assert corpus.titles == ["one", "two", "three"]


def test_svmlight_round_trip(tmp_path):
    path = write_svmlight(tmp_path / "c.feat", COUNTS, VOCAB, labels=[3, 1, 2])
    assert path.read_text().splitlines()[0] == "3 1:1 3:2"  # 1-based ids
    corpus = read_svmlight(path)
    assert _same(corpus.counts, COUNTS) and corpus.vocab == VOCAB
    assert corpus.labels.tolist() == [3, 1, 2] and corpus.labels.dtype == np.int64


def test_npz_round_trip(tmp_path):
    tokens = [np.array([0, 2, 2]), np.array([1, 4, 1, 1]), np.array([0, 0, 1, 2, 3, 0, 0, 4])]
    path = save_npz_corpus(tmp_path / "c.npz", COUNTS, VOCAB, titles=["a", "b", "c"],
                           labels=np.array([0, 1, 0]), tokens=tokens)
    corpus = read_npz(path)
    assert _same(corpus.counts, COUNTS) and corpus.vocab == VOCAB
    assert corpus.titles == ["a", "b", "c"] and corpus.labels.tolist() == [0, 1, 0]
    assert all(np.array_equal(a, b) for a, b in zip(corpus.tokens, tokens))
    # a matrix saved by scipy itself is read when the vocabulary is given
    sp.save_npz(tmp_path / "s.npz", COUNTS)
    assert _same(read_npz(tmp_path / "s.npz", vocab=VOCAB).counts, COUNTS)


def test_raw_text_keeps_order_and_round_trips_through_prepare(tmp_path):
    docs = ["The cat sat on the mat with a cat", "Dogs chase cats; the dog barks at a dog", "",
            "the of and", "Cat sat and dog and mat"]
    (tmp_path / "docs.txt").write_text("\n".join(docs) + "\n")
    corpus = read_text(tmp_path / "docs.txt", vocab_size=4)
    assert corpus.vocab == ["cat", "dog", "mat", "sat"]  # "the", "on", "and" are stop words
    word = {w: i for i, w in enumerate(corpus.vocab)}
    assert corpus.tokens[1].tolist() == [word["dog"], word["dog"]]  # "chase", "cats": not kept
    assert corpus.tokens[0].tolist() == [word[w] for w in ("cat", "sat", "mat", "cat")]
    lengths = np.asarray(corpus.counts.sum(axis=1)).ravel()
    assert lengths.tolist() == [len(t) for t in corpus.tokens]
    fixed = read_text(tmp_path / "docs.txt", vocab=["mat", "dogs"])  # a given vocabulary, in order
    assert fixed.vocab == ["mat", "dogs"] and fixed.tokens[4].tolist() == [0]
    summary = prepare_corpus(tmp_path / "docs.txt", tmp_path / "c.npz", vocab_size=4)
    assert summary["documents"] == 5 and summary["empty_documents"] == 2
    back = read_npz(tmp_path / "c.npz")
    assert _same(back.counts, corpus.counts) and back.vocab == corpus.vocab
    assert all(np.array_equal(a, b) for a, b in zip(back.tokens, corpus.tokens))
    dataset = load(tmp_path / "c.npz")
    assert dataset.meta["dropped_empty"] == 2 and len(dataset.train) + len(dataset.test) == 3
    counts, tokens = corpus_counts(dataset)
    assert counts.sum() == sum(len(t) for t in tokens) == lengths.sum()


def test_loaders_split_and_batch(tmp_path):
    write_ldac(tmp_path / "c.ldac", sp.vstack([COUNTS] * 4), VOCAB)
    data = load(tmp_path / "c.ldac", seed=3)
    again = load(tmp_path / "c.ldac", seed=3)
    assert data.kind == "text" and data.meta["vocab"] == VOCAB and data.num_features == 5
    assert (len(data.train), len(data.test)) == (10, 2) and data.meta["split"].startswith("random")
    assert _same(data.test.counts, again.test.counts)
    x = data.train.batch(torch.tensor([1, 0]))
    assert x.dtype == torch.float32 and x.shape == (2, 5)
    first = torch.as_tensor(data.train.counts[0].toarray()[0], dtype=torch.float32)
    assert torch.equal(x[1], first)
    assert isinstance(data.train, SparseCountsSplit) and sp.issparse(data.train.counts)
    assert data.train.lengths.sum() + data.test.lengths.sum() == 4 * COUNTS.sum()


BAD = [  # (suffix, file content, expected message)
    (".ldac", "1 0:1\n2 0:1 1:-1\n", r"line 2: negative count in '1:-1'"),
    (".ldac", "1 0:1\n1 0:1.5\n", r"line 2: fractional count"),
    (".ldac", "1 0:nan\n", r"line 1: NaN count in '0:nan'"),
    (".ldac", "1 0:1\n1 5:1\n", r"line 2: word id outside the vocabulary of 5 words \(0-based"),
    (".ldac", "1 0:1\n\n1 -1:1\n", r"line 3: word id outside the vocabulary"),
    (".ldac", "1 12:x\n", r"line 1: malformed token: count 'x' is not a number in '12:x'"),
    (".ldac", "2 0:1 abc\n", r"line 1: malformed token \(expected id:count\) in 'abc'"),
    (".ldac", "1 a:1\n", r"line 1: malformed token: word id 'a' is not a 64-bit integer"),
    (".ldac", "1 99999999999999999999:1\n", r"line 1: malformed token: word id '9+' is not a 64"),
    (".ldac", "1 0:1\n3 0:1 1:1\n", r"line 2: count mismatch: the line starts with N=3 but has 2"),
    (".ldac", "x 0:1\n", r"line 1: leading count 'x' is not an integer"),
    (".feat", "1 1:1\n2 0:1\n", r"line 2: word id outside .* \(1-based ids 1..5\) in '0:1'"),
    (".feat", "1 6:1\n", r"line 1: word id outside the vocabulary of 5 words"),
    (".feat", "1 1:2\nabc 1:1\n", r"line 2: label 'abc' is not a number"),
    (".feat", "1:1 2:1\n", r"line 1: missing label"),
    (".feat", "1 2:inf\n", r"line 1: infinite or too large count in '2:inf'"),
    (".feat", "1 2:0.5 # comment\n", r"line 1: fractional count"),
]


@pytest.mark.parametrize("suffix, content, message", BAD)
def test_bad_lines_are_refused(tmp_path, suffix, content, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    (tmp_path / "bad.vocab").write_text("\n".join(VOCAB) + "\n")
    with pytest.raises(ValueError, match=rf"bad{suffix}, {message}"):
        load(path)


@pytest.mark.parametrize("value, message", [
    (-2.0, "negative count"), (np.nan, "NaN count"), (0.5, "fractional count")])
def test_bad_npz_is_refused(tmp_path, value, message):
    save_npz_corpus(tmp_path / "c.npz", COUNTS, VOCAB)
    with np.load(tmp_path / "c.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["data"] = arrays["data"].astype(np.float64)
    arrays["data"][3] = value  # the first entry of row 1
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(ValueError, match=rf"c.npz, row 1 \(0-based\): {message}"):
        load(tmp_path / "c.npz")


def test_other_bad_files(tmp_path):
    (tmp_path / "c.ldac").write_text("1 0:1\n")
    with pytest.raises(ValueError, match=r"c.ldac: no vocabulary file found .* pass vocab="):
        load(tmp_path / "c.ldac")
    (tmp_path / "c.vocab").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match=r"c.vocab, line 2: empty line in a vocabulary file"):
        load(tmp_path / "c.ldac")
    (tmp_path / "c.vocab").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"c.vocab, line 3: word 'a' already on line 1"):
        load(tmp_path / "c.ldac")
    (tmp_path / "d.txt").write_bytes(b"good words here\nmore words\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"d.txt, line 3: not valid UTF-8"):
        load(tmp_path / "d.txt")
    (tmp_path / "e.txt").write_text("the and\nof the\n")
    with pytest.raises(ValueError, match=r"e.txt: cannot build a vocabulary"):
        load(tmp_path / "e.txt")
    (tmp_path / "f.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"f.npz: not a readable .npz archive"):
        load(tmp_path / "f.npz")


def test_empty_documents_are_dropped_and_counted(tmp_path, caplog):
    (tmp_path / "c.ldac").write_text("1 0:1\n0\n\n2 1:1 2:1\n1 3:0\n1 4:2\n")
    (tmp_path / "c.vocab").write_text("\n".join(VOCAB) + "\n")
    with caplog.at_level(logging.INFO, logger="zoo.data.text"):
        data = load(tmp_path / "c.ldac")
    assert data.meta["dropped_empty"] == 3 and len(data.train) + len(data.test) == 3
    assert "dropped 3 empty document(s) of 6" in caplog.text
    (tmp_path / "c.feat").write_text("1 1:1\n2\n3 2:2 3:1\n")
    data = load(tmp_path / "c.feat", vocab=tmp_path / "c.vocab")
    assert data.meta["dropped_empty"] == 1
    assert sorted(data.meta["labels"]["train"].tolist() + data.meta["labels"]["test"].tolist()) \
        == [1, 3]
    (tmp_path / "d.txt").write_text("apple pie\nthe of\n\napple tart\n")
    assert load(tmp_path / "d.txt").meta["dropped_empty"] == 2


def test_bundled_reuters():
    data = load("reuters")
    assert len(data.train) + len(data.test) == 395 - data.meta["dropped_empty"] == 395
    assert len(data.meta["vocab"]) == data.num_features == 4258
    assert data.meta["vocab"][:3] == ["church", "pope", "years"]
    counts, tokens = corpus_counts(data)
    assert counts.sum() == 84010 and tokens is None
    assert all(t.split()[0].isdigit() for t in data.train.titles[:5])


def test_20news(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_20NEWS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"20news: no 20news.feat and vocab.txt in .*ZOO_20NEWS"):
        load("20news")
    if not (DEFAULT_20NEWS_DIR / "20news.feat").exists():
        pytest.skip(f"20 Newsgroups data not present in {DEFAULT_20NEWS_DIR}")
    monkeypatch.delenv("ZOO_20NEWS_DIR")
    data = load("20news")
    assert (len(data.train), len(data.test)) == (6004, 1501)
    assert data.num_features == len(data.meta["vocab"]) == 2000 and data.meta["dropped_empty"] == 0
    assert corpus_counts(data)[0].sum() == 720898
    assert sorted(set(data.train.labels.tolist())) == list(range(1, 21))
    assert data.meta["vocab"][:3] == ["who", "out", "which"]
