"""The fortune-file reader (zoo/data/fortunes.py): entries, categories as labels, word order,
what it skips, and the errors it raises; on small files in the format that the tests write."""

import numpy as np
import pytest

from zoo.data import load
from zoo.data.biterms import biterm_dataset
from zoo.data.fortunes import read_fortunes

SPACE = """The rocket reached orbit and the astronaut saw the planet.
%
Orbit the planet, said the astronaut to the rocket.
\t\t-- Mission Control
%
%
A planet in orbit needs no rocket, only an astronaut's dream.
"""
FOOD = """Bread and cheese and wine: a dinner for a hungry cook.
%
The cook baked b\bbr\bre\bea\bad\bd for dinner with cheese.
%
Wine, cheese and bread, said the hungry cook at dinner.
%
1999 ____
"""


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "space").write_text(SPACE)
    (tmp_path / "food").write_text(FOOD)
    (tmp_path / "food.dat").write_bytes(b"\x00\x00\x00\x02 index, not text")
    (tmp_path / "food.u8").symlink_to(tmp_path / "food")  # Debian's links: read once
    return tmp_path


def test_entries_are_split_on_percent_lines_and_overstrikes_removed(folder):
    entries = read_fortunes(folder / "food")
    assert len(entries) == 4
    assert entries[1] == "The cook baked bread for dinner with cheese."
    space = read_fortunes(folder / "space")
    assert len(space) == 3  # the empty entry between two '%' lines is skipped
    assert space[1].endswith("-- Mission Control")


def test_categories_are_labels_and_word_order_is_kept(folder):
    data = load("fortunes", folder=folder, test_fraction=0.25, seed=0, min_df=1, max_df=1.0)
    assert data.meta["label_names"] == ["food", "space"]  # sorted; .dat and link skipped
    # "1999 ____" has no word of two letters: dropped and counted
    assert data.meta["dropped_empty"] == 1
    assert len(data.train) + len(data.test) == 6
    vocab = data.meta["vocab"]
    assert "1999" not in vocab and "____" not in vocab and "the" not in vocab  # stop word
    labels = np.concatenate([data.train.labels, data.test.labels])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    split = data.train
    for tokens, row, label in zip(split.tokens, split.counts, split.labels):
        words = [vocab[i] for i in tokens]
        assert sorted(words) == sorted(np.repeat(vocab, row.toarray().ravel()).tolist())
        assert ("astronaut" in words) == (label == 1)
    # the order is the text's: what biterms are built from
    texts = {" ".join(vocab[i] for i in t) for t in split.tokens + data.test.tokens}
    assert "rocket reached orbit astronaut saw planet" in texts
    graphs = biterm_dataset(data, docs_per_corpus=2)
    assert graphs.kind == "graph" and graphs.num_features == len(vocab)


def test_chosen_categories_and_clear_errors(folder, tmp_path_factory):
    data = load("fortunes", folder=folder, categories=["space"], min_df=1, max_df=1.0)
    assert data.meta["label_names"] == ["space"]
    with pytest.raises(ValueError, match="no category file.*music.*it has food, space"):
        load("fortunes", folder=folder, categories=["music"])
    missing = tmp_path_factory.mktemp("empty") / "nowhere"
    with pytest.raises(ValueError, match="apt-get install fortunes"):
        load("fortunes", folder=missing)
    (folder / "latin1").write_bytes(b"ok\n%\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1, line 3: not UTF-8"):
        load("fortunes", folder=folder)
