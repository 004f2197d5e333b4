r"""The containers every loader returns: a :class:`Dataset` with a train and a test
:class:`Split`.

A split materializes batches on demand (``split.batch(index, generator)``), so a sparse bag of
words stays sparse until a batch is needed, and a Bernoulli image model sees a fresh binarization
of its training images on every pass (dynamic binarization) while its test images are binarized
once, with a fixed seed, so every evaluation scores the same binary images.

``split.to(device)`` is the split as the engine trains on it: its batches come out on ``device``.
By default each batch is materialized where the split keeps its data and then copied
(:class:`DeviceSplit`); a :class:`TensorSplit` moves its values to the device once and binarizes
there (with a generator on that device), so a GPU epoch copies nothing from the host but the
batch indices.

The engine hands ``batch`` the generator of the split's device. A split that keeps its data on
the CPU but draws random numbers (:attr:`Split.uses_generator`: GraphBTM's resampled
mini-corpora) then gets, through :class:`DeviceSplit`, a CPU generator seeded by one draw from
the device's generator: reproducible from the run's seed, and resumed exactly with the device
generator's saved state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


class Split:
    """A set of data points that can be materialized in batches."""

    #: how the split binarizes its values (``"dynamic"``, ``"fixed"``), ``None`` when it does not
    binarize: str | None = None
    #: each document's word ids in order (text read from raw text), ``None`` otherwise
    tokens: list | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def num_features(self) -> int:
        """Features per data point (pixels, or the vocabulary size)."""
        raise NotImplementedError

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Dense float32 rows ``index`` (a 1-d LongTensor), on the CPU."""
        raise NotImplementedError

    @property
    def uses_generator(self) -> bool:
        """Whether :meth:`batch` draws from its ``generator`` (dynamic binarization, resampled
        groups); only then does :class:`DeviceSplit` derive a CPU generator for it."""
        return self.binarize == "dynamic"

    def dense(self) -> torch.Tensor:
        """The whole split as one dense tensor."""
        return self.batch(torch.arange(len(self)))

    def to(self, device) -> Split:
        """This split with its batches on ``device`` (itself on the CPU)."""
        device = torch.device(device)
        return self if device.type == "cpu" else DeviceSplit(self, device)


class DeviceSplit(Split):
    """A split whose batches are materialized by ``split`` and then copied to ``device``."""

    def __init__(self, split: Split, device: torch.device):
        self.split, self.device = split, device
        self.binarize, self.tokens = split.binarize, split.tokens

    def __len__(self):
        return len(self.split)

    @property
    def num_features(self):
        """Features per data point, as the split it holds."""
        return self.split.num_features

    def batch(self, index, generator=None):
        if generator is not None and generator.device.type != "cpu" and self.split.uses_generator:
            generator = cpu_generator(generator)
        return self.split.batch(index.cpu(), generator).to(self.device, non_blocking=True)

    @property
    def uses_generator(self):
        return self.split.uses_generator

    def to(self, device) -> Split:
        return self.split.to(device)


def cpu_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator seeded by one 63-bit draw from ``generator`` (on any device): the same
    device stream gives the same CPU stream, so a run stays reproducible and resumable. The
    draw is read back on the host (one synchronization per batch that needs it)."""
    seed = torch.randint(2**63 - 1, (), generator=generator, device=generator.device)
    return torch.Generator().manual_seed(int(seed))


class TensorSplit(Split):
    """Rows of a dense tensor ``[N, D]``.

    :param str binarize: ``None`` (values as they are), ``"dynamic"`` (each batch draws
        ``x ~ Bernoulli(values)`` from the generator), or ``"fixed"`` (drawn once from ``seed``).
    """

    def __init__(self, values: torch.Tensor, binarize: str | None = None, seed: int = 0):
        if binarize not in (None, "dynamic", "fixed"):
            raise ValueError(f"binarize must be None, 'dynamic' or 'fixed', got {binarize!r}")
        values = torch.as_tensor(values, dtype=torch.float32)
        if binarize == "fixed":
            values = torch.bernoulli(values, generator=torch.Generator().manual_seed(seed))
        self.values = values
        self.binarize = binarize

    def __len__(self):
        return self.values.shape[0]

    @property
    def num_features(self):
        """Features per data point: the width of the tensor."""
        return self.values.shape[1]

    def batch(self, index, generator=None):
        """Rows ``index`` on the values' device; dynamic binarization draws from ``generator``,
        which must live on that device too."""
        # A CPU index for values on a GPU: copied without blocking (indexing with it directly
        # copies it blocking, which waits for every queued kernel: a host sync per batch)
        x = self.values[index.to(self.values.device, non_blocking=True)]
        if self.binarize == "dynamic":
            x = torch.bernoulli(x, generator=generator)
        return x

    def to(self, device) -> Split:
        """The same rows held on ``device`` (binarized there, from a generator on it)."""
        device = torch.device(device)
        if self.values.device == device:
            return self
        moved = TensorSplit.__new__(TensorSplit)
        moved.values, moved.binarize = self.values.to(device), self.binarize
        return moved


@dataclass
class Dataset:
    """What ``zoo.data.load`` returns.

    :ivar str kind: ``"image"`` or ``"text"``
    :ivar dict meta: ``image_shape`` for images; ``vocab`` (list of words) for text; ``split``
        (how train/test were drawn) and ``source`` (the file or bundled name) for both
    """

    name: str
    train: Split
    test: Split
    kind: str
    meta: dict = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        """Features per data point (pixels, or the vocabulary size)."""
        return self.train.num_features

    def __repr__(self):
        return (
            f"Dataset({self.name!r}, kind={self.kind!r}, train={len(self.train)}, "
            f"test={len(self.test)}, features={self.num_features})"
        )


def train_test_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)``; the same ``(n, test_fraction, seed)`` always gives
    the same split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])
