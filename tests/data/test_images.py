"""Image loaders: scikit-learn digits, MNIST IDX files (written here, never downloaded), .npy."""

import gzip
import struct

import numpy as np
import pytest
import torch

import zoo.data.images  # noqa: F401  (registers "digits", "dir", the IDX suffixes and ".npy")
from zoo.data import load
from zoo.data.images import load_idx_file
from zoo.data.mnist import read_idx, read_idx_images, write_idx


def idx_bytes(array, magic=None):
    """IDX bytes written by hand from the format's description (independent of write_idx)."""
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write(path, data):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def mnist_folder(folder, n_train=7, n_test=3, shape=(4, 5), gz=("train-images",)):
    """A tiny MNIST folder; the files named in ``gz`` are gzipped."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(exist_ok=True)
    for name, array in arrays.items():
        suffix = ".gz" if name.rsplit("-idx", 1)[0] in gz else ""
        write(folder / f"{name}{suffix}", idx_bytes(array))
    return arrays


# scikit-learn digits ------------------------------------------------------------------------


def test_digits_shapes_and_ranges():
    from sklearn.datasets import load_digits

    data = load("digits", binarize=False)
    assert data.kind == "image" and data.meta["image_shape"] == (8, 8)
    assert (len(data.train), len(data.test), data.num_features) == (1438, 359, 64)
    assert data.meta["split"].startswith("random 80/20") and "seed 0" in data.meta["split"]
    labels = data.meta["labels"]
    assert labels["train"].shape == (1438,) and labels["test"].shape == (359,)
    x = data.train.dense()
    assert x.dtype == torch.float32 and x.min() == 0.0 and x.max() == 1.0
    assert ((x > 0) & (x < 1)).any()  # real-valued, for the Gaussian likelihood
    # The rows are sklearn's images / 16, with their labels.
    bunch = load_digits()
    row = bunch.data[bunch.target == labels["test"][0]] / 16.0
    assert np.isclose(row, data.test.dense()[0].numpy()).all(axis=1).any()


def test_digits_split_is_reproducible():
    a, b = load("digits", seed=3, binarize=False), load("digits", seed=3, binarize=False)
    assert np.array_equal(a.meta["labels"]["test"], b.meta["labels"]["test"])
    assert torch.equal(a.train.dense(), b.train.dense())
    assert torch.equal(a.test.dense(), b.test.dense())
    c = load("digits", seed=4, binarize=False)
    assert not torch.equal(a.test.dense(), c.test.dense())
    assert not np.array_equal(a.meta["labels"]["train"], c.meta["labels"]["train"])
    half = load("digits", seed=4, test_fraction=0.5)
    assert len(half.test) == 898 and half.meta["split"].startswith("random 50/50 (899/898), seed 4")


def test_digits_binarization_dynamic_train_fixed_test():
    data = load("digits")
    generator = torch.Generator().manual_seed(0)
    index = torch.arange(64)
    first, second = data.train.batch(index, generator), data.train.batch(index, generator)
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)  # a fresh binarization per batch
    test = data.test.dense()
    assert set(test.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(test, data.test.dense())
    assert torch.equal(test, load("digits").test.dense())


# MNIST IDX ----------------------------------------------------------------------------------


def test_mnist_folder_round_trip_plain_and_gz(tmp_path):
    arrays = mnist_folder(tmp_path / "mnist", gz=("train-images", "t10k-labels"))
    data = load(tmp_path / "mnist", binarize=False)
    assert data.name == "mnist" and data.meta["image_shape"] == (4, 5)
    assert (len(data.train), len(data.test), data.num_features) == (7, 3, 20)
    expected = arrays["train-images-idx3-ubyte"].reshape(7, 20) / 255.0
    assert np.allclose(data.train.dense().numpy(), expected)
    expected = arrays["t10k-images-idx3-ubyte"].reshape(3, 20) / 255.0
    assert np.allclose(data.test.dense().numpy(), expected)
    assert np.array_equal(data.meta["labels"]["train"], arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(data.meta["labels"]["test"], arrays["t10k-labels-idx1-ubyte"])
    assert data.meta["split"] == "official train/t10k files (7/3)"

    # The dotted spelling of some downloads (train-images.idx3-ubyte) is found too.
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").rename(
        tmp_path / "mnist" / "t10k-images.idx3-ubyte"
    )
    assert torch.equal(load(tmp_path / "mnist", binarize=False).test.dense(), data.test.dense())

    small = load(tmp_path / "mnist", limit=2)
    assert (len(small.train), len(small.test)) == (2, 2) and "first 2" in small.meta["split"]
    assert set(small.test.dense().unique().tolist()) <= {0.0, 1.0}
    assert np.array_equal(small.meta["labels"]["train"], arrays["train-labels-idx1-ubyte"][:2])


def test_single_idx_file_with_sibling_labels(tmp_path):
    images = np.arange(10 * 2 * 3, dtype=np.uint8).reshape(10, 2, 3)
    labels = np.arange(10, dtype=np.uint8)
    write(tmp_path / "train-images.idx3-ubyte.gz", idx_bytes(images))
    write(tmp_path / "train-labels.idx1-ubyte", idx_bytes(labels))
    data = load(tmp_path / "train-images.idx3-ubyte.gz", seed=1, binarize=False)
    assert (len(data.train), len(data.test), data.meta["image_shape"]) == (8, 2, (2, 3))
    assert "seed 1" in data.meta["split"]
    for part in ("train", "test"):  # each row still carries its own label
        rows = getattr(data, part).dense().numpy()
        owners = np.round(rows[:, 0] * 255 / 6).astype(int)
        assert np.array_equal(owners, data.meta["labels"][part])
    # MNIST's own dashed spelling, without labels beside it
    (tmp_path / "x").mkdir()
    write(tmp_path / "x" / "t10k-images-idx3-ubyte", idx_bytes(images))
    lone = load_idx_file(tmp_path / "x" / "t10k-images-idx3-ubyte", limit=5)
    assert len(lone.train) + len(lone.test) == 5 and lone.meta["labels"] is None


def test_write_idx_round_trip(tmp_path):
    for array in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.linspace(0, 1, 6)):
        for name in ("a.idx", "a.idx.gz"):
            back = read_idx(write_idx(tmp_path / name, array))
            assert back.dtype == array.dtype and np.array_equal(back, array)


# Bad input, each refused with a message naming the file and the problem --------------------


def test_idx_truncated(tmp_path):
    data = idx_bytes(np.zeros((5, 4, 3), np.uint8))[:-50]
    path = write(tmp_path / "train-images-idx3-ubyte", data)
    message = (
        r"train-images-idx3-ubyte: truncated: header says 5x4x3 = 60 bytes of pixels, found 10"
    )
    with pytest.raises(ValueError, match=message):
        read_idx_images(path)
    write(tmp_path / "short.idx3-ubyte", data[:9])
    with pytest.raises(ValueError, match=r"short.idx3-ubyte: truncated: the header .* 16 bytes"):
        load(tmp_path / "short.idx3-ubyte")
    write(tmp_path / "long.idx3-ubyte", idx_bytes(np.zeros((5, 4, 3), np.uint8)) + b"\0")
    with pytest.raises(ValueError, match=r"long.idx3-ubyte: 1 unexpected bytes after the 60"):
        load(tmp_path / "long.idx3-ubyte")
    (tmp_path / "cut.idx3-ubyte.gz").write_bytes(gzip.compress(data)[:-8])
    with pytest.raises(ValueError, match=r"cut.idx3-ubyte.gz: corrupt or truncated gzip"):
        load(tmp_path / "cut.idx3-ubyte.gz")


def test_idx_wrong_magic(tmp_path):
    mnist_folder(tmp_path)
    labels = idx_bytes(np.zeros(7, np.uint8))
    write(tmp_path / "train-images-idx3-ubyte", labels)  # a labels file under the images name
    message = r"train-images-idx3-ubyte: wrong magic number 0x00000801, expected 0x00000803"
    with pytest.raises(ValueError, match=message):
        load(tmp_path)


def test_idx_label_count_mismatch(tmp_path):
    mnist_folder(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8)))
    message = r"t10k-labels-idx1-ubyte: 2 labels for the 3 images of t10k-images-idx3-ubyte"
    with pytest.raises(ValueError, match=message):
        load(tmp_path)


def test_mnist_folder_wrong_image_size_and_missing_files(tmp_path):
    mnist_folder(tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((3, 5, 5), np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: wrong image size 5x5, .* 4x5"):
        load(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(ValueError, match=r"not an MNIST folder: missing t10k-images-idx3-ubyte"):
        load(tmp_path)
    with pytest.raises(ValueError, match=r"limit must be a positive"):
        load(tmp_path, limit=0)


def test_npy_loads_and_scales(tmp_path):
    rng = np.random.default_rng(0)
    floats = rng.random((10, 3, 4), dtype=np.float32)
    np.save(tmp_path / "floats.npy", floats)
    data = load(tmp_path / "floats.npy", binarize=False)
    assert data.meta["image_shape"] == (3, 4) and data.num_features == 12
    assert len(data.train) == 8 and data.meta["labels"] is None
    np.save(tmp_path / "bytes.npy", (floats * 255).astype(np.uint8).reshape(10, 12))
    data = load(tmp_path / "bytes.npy", binarize=False, image_shape=(3, 4))
    assert data.meta["image_shape"] == (3, 4) and data.test.dense().max() <= 1.0
    np.save(tmp_path / "binary.npy", rng.integers(0, 2, (6, 16)))
    data = load(tmp_path / "binary.npy", binarize=False, test_fraction=0.5)
    assert data.meta["image_shape"] == (4, 4)
    assert set(data.train.dense().unique().tolist()) == {0.0, 1.0}


def test_npy_nan(tmp_path):
    array = np.full((6, 4), 0.5)
    array[3, 2], array[5, 0] = np.nan, np.inf
    np.save(tmp_path / "nan.npy", array)
    with pytest.raises(ValueError, match=r"nan.npy: row 3 contains nan \(2 row\(s\) with NaN"):
        load(tmp_path / "nan.npy")


def test_npy_out_of_range(tmp_path):
    array = np.full((6, 4), 0.5)
    array[4, 1] = 1.5
    np.save(tmp_path / "range.npy", array)
    with pytest.raises(ValueError, match=r"range.npy: row 4 has value 1.5 outside \[0.0, 1.0\]"):
        load(tmp_path / "range.npy")
    np.save(tmp_path / "ints.npy", np.array([[0, 3], [300, 2]]))
    with pytest.raises(ValueError, match=r"ints.npy: row 1 has value 300 outside \[0, 255\]"):
        load(tmp_path / "ints.npy")


def test_npy_wrong_shape(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(12))
    with pytest.raises(ValueError, match=r"flat.npy: expected images of shape .* \(1-d\)"):
        load(tmp_path / "flat.npy")
    np.save(tmp_path / "rows.npy", np.zeros((4, 12)))
    with pytest.raises(ValueError, match=r"rows.npy: wrong image size: image_shape=\(5, 5\)"):
        load(tmp_path / "rows.npy", image_shape=(5, 5))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"junk.npy: not a readable .npy array"):
        load(tmp_path / "junk.npy")


def test_unknown_suffix_and_bad_options(tmp_path):
    (tmp_path / "images.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"Cannot load .*images.png.*not a file of a known format"):
        load(tmp_path / "images.png")
    with pytest.raises(ValueError, match=r"binarize must be True or False"):
        load("digits", binarize="dynamic")
