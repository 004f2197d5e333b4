"""Matplotlib figures used by the CLI and the tutorials. Each function returns the Figure and,
given ``path``, saves it as PNG. The Agg backend is selected so that nothing needs a display."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def image_grid(images, image_shape, ncols: int = 10, title: str | None = None, path=None):
    """A grid of flattened images ``[N, prod(image_shape)]`` with values in [0, 1]."""
    images = np.asarray(images, dtype=float).reshape(-1, *image_shape)
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.8, nrows * 0.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, images):
        ax.imshow(img, cmap="gray_r", vmin=0.0, vmax=1.0, interpolation="nearest")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def reconstruction_grid(originals, reconstructions, image_shape, path=None):
    """Originals (top row of each pair) above their reconstructions (bottom row)."""
    originals = np.asarray(originals, dtype=float)
    reconstructions = np.asarray(reconstructions, dtype=float)
    n = len(originals)
    rows = []
    for start in range(0, n, 10):
        rows.append(originals[start:start + 10])
        rows.append(reconstructions[start:start + 10])
    return image_grid(np.concatenate(rows), image_shape, ncols=10,
                      title="data (odd rows) and reconstructions (even rows)", path=path)
