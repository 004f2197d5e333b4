"""Data loaders: ``zoo.data.load(name_or_path)`` returns a :class:`~zoo.data.dataset.Dataset`
with train and test splits and metadata (the vocabulary for text, the image shape for images)."""

from zoo.data.dataset import Dataset, Split, TensorSplit, train_test_indices  # noqa: F401
from zoo.data.registry import (  # noqa: F401
    list_datasets,
    list_formats,
    load,
    register_dataset,
    register_format,
)

# Importing a loader module registers its datasets and formats.
from zoo.data import images  # noqa: E402,F401  (digits, .npy arrays, MNIST IDX files)
from zoo.data import text  # noqa: E402,F401  (reuters, 20news, .ldac, .feat/.svmlight, .npz, .txt)
