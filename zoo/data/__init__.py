"""Data loaders: ``zoo.data.load(name_or_path)`` returns a :class:`~zoo.data.dataset.Dataset`
with train and test splits and metadata (the vocabulary for text, the image shape for images)."""

# Importing a loader module registers its datasets and formats.
from zoo.data import (  # noqa: F401
    fortunes,  # noqa: F401,E402  (fortunes: Debian's fortune files)
    images,  # digits, .npy arrays, MNIST IDX files
    text,  # reuters, 20news, .ldac, .feat/.svmlight, .npz, .txt
)
from zoo.data.dataset import Dataset, Split, TensorSplit, train_test_indices  # noqa: F401
from zoo.data.registry import (  # noqa: F401
    list_datasets,
    list_formats,
    load,
    register_dataset,
    register_format,
)
