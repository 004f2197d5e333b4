"""Matplotlib figures used by the CLI and the tutorials. Each function returns the Figure and,
given ``path``, saves it as PNG. Nothing here selects a backend: in a notebook the figures show
inline, and on a machine without a display matplotlib falls back to its headless Agg backend by
itself; the CLI saves the figures and closes them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def _save(fig, path, crop: bool = True):
    """Save ``fig`` as PNG when ``path`` is given. ``crop`` trims the margins with
    ``bbox_inches="tight"``, an extra draw of the whole figure; figures laid out by
    ``tight_layout`` already have none to trim and skip it."""
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight" if crop else None)
    return fig


def _as_array(x) -> np.ndarray:
    """A float64 numpy array from a numpy array, a list or a torch tensor of any device and
    floating-point type (figures take what they draw to the CPU)."""
    if torch.is_tensor(x):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=float)


def image_grid(images, image_shape, ncols: int = 10, title: str | None = None, path=None):
    """A grid of flattened images ``[N, prod(image_shape)]`` with values in [0, 1] (a NumPy
    array, a list, or a torch tensor on any device)."""
    images = _as_array(images).reshape(-1, *image_shape)
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
    originals, reconstructions = _as_array(originals), _as_array(reconstructions)
    n = len(originals)
    rows = []
    for start in range(0, n, 10):
        rows.append(originals[start:start + 10])
        rows.append(reconstructions[start:start + 10])
    return image_grid(np.concatenate(rows), image_shape, ncols=10,
                      title="data (odd rows) and reconstructions (even rows)", path=path)


# --- Topic models: top words, document proportions, training curves -----------------------------


def plot_topic_top_words(topic_word, vocab, n_words: int = 10, path=None, ncols: int = 5,
                         topics=None):
    """Horizontal bars of each topic's ``n_words`` heaviest words, heaviest on top, each topic's
    bars scaled to its heaviest word (the weight printed under the title).

    All topics share one frameless Axes: the bars are one ``PolyCollection`` and the words plain
    text. A grid of one Axes per topic (ticks, tick labels, ``tight_layout``) took about 4 s to
    save for K = 50, a quarter of a 15-epoch ``zoo train prodlda`` run on 20 Newsgroups
    (``benchmarks/topic_throughput.py``); this takes under a second.

    :param topic_word: ``[K, V]`` topic-word probabilities (or weights; the bars show the values)
    :param vocab: the ``V`` words
    :param topics: which topics to draw (default all)
    """
    from matplotlib.collections import PolyCollection

    topic_word = _as_array(topic_word)
    if topic_word.ndim != 2 or topic_word.shape[1] != len(vocab):
        raise ValueError(f"topic_word must be [topics, {len(vocab)}], got {topic_word.shape}.")
    topics = list(range(topic_word.shape[0])) if topics is None else list(topics)
    n_words = min(n_words, topic_word.shape[1])
    ncols = max(1, min(ncols, len(topics)))
    nrows = int(np.ceil(len(topics) / ncols))
    cell = n_words + 2.5  # rows of text per topic: its words, a title line and a gap
    fig = plt.figure(figsize=(2.6 * ncols, 0.22 * cell * nrows))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    bars = []
    for slot, k in enumerate(topics):
        row, col = divmod(slot, ncols)
        ids = np.argsort(-topic_word[k], kind="stable")[:n_words]
        weights = topic_word[k, ids]
        widths = 0.55 * weights / max(weights.max(), 1e-300)  # the column is 1 wide
        top = -row * cell - 2.0  # y of the heaviest word; y grows upwards
        x0 = col + 0.42  # words to the left of x0, bars to the right
        for i, (word, width) in enumerate(zip(ids, widths)):
            y = top - i
            bars.append([(x0, y - 0.4), (x0 + width, y - 0.4), (x0 + width, y + 0.4),
                         (x0, y + 0.4)])
            ax.text(x0 - 0.02, y, str(vocab[word]), ha="right", va="center", fontsize=7)
        ax.text(col + 0.5, top + 1.2, f"topic {k}  (max {weights.max():.3g})", ha="center",
                va="center", fontsize=8)
    ax.add_collection(PolyCollection(bars, facecolors="tab:blue", edgecolors="none"))
    ax.set_xlim(0.0, ncols)
    ax.set_ylim(-nrows * cell, 0.0)
    if path is not None:  # the layout is fixed: no ``bbox_inches="tight"`` pass over the text
        fig.savefig(path, dpi=110)
    return fig


def plot_document_topics(doc_topic, path=None, max_documents: int = 100, titles=None):
    """A heat map of document-topic proportions ``[D, K]`` (rows: the first ``max_documents``
    documents, labelled by ``titles`` when given; columns: topics)."""
    doc_topic = _as_array(doc_topic)
    if doc_topic.ndim != 2:
        raise ValueError(f"doc_topic must be [documents, topics], got shape {doc_topic.shape}.")
    shown = doc_topic[:max_documents]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.2 * shown.shape[1] + 2),
                                    max(3.0, 0.12 * shown.shape[0] + 1)))
    image = ax.imshow(shown, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0)
    ax.set_xlabel("topic")
    ax.set_ylabel("document")
    if titles is not None:
        ax.set_yticks(np.arange(len(shown)), [str(t)[:40] for t in titles[: len(shown)]],
                      fontsize=5)
    fig.colorbar(image, ax=ax, label="proportion")
    ax.set_title(f"document-topic proportions ({len(shown)} of {len(doc_topic)} documents)")
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(history, path=None):
    """Training loss, held-out ELBO and, when recorded, perplexity and NPMI, per epoch.

    :param history: a list of dicts (one per epoch) with ``epoch``, ``train_loss``,
        ``heldout_elbo`` and optionally ``perplexity``, ``npmi``; or the path of a run's
        ``metrics.jsonl`` (one such dict per line). Missing values are skipped.
    """
    if isinstance(history, (str, bytes)) or hasattr(history, "read_text"):
        import json
        from pathlib import Path

        lines = Path(history).read_text().splitlines()
        history = [json.loads(line) for line in lines if line.strip()]
    if not history:
        raise ValueError("history is empty: nothing to plot.")
    panels = [(key, label) for key, label in (
        ("train_loss", "training loss"), ("heldout_elbo", "held-out ELBO"),
        ("perplexity", "held-out perplexity"), ("npmi", "NPMI"),
    ) if any(record.get(key) is not None for record in history)]
    if not panels:
        raise ValueError("history has none of train_loss, heldout_elbo, perplexity, npmi.")
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        points = [(r.get("epoch", i), r[key]) for i, r in enumerate(history)
                  if r.get(key) is not None]
        epochs, values = zip(*points)
        ax.plot(epochs, values, marker="o", markersize=3)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path, crop=False)


def plot_topic_correlations(corr, labels=None, n_pairs: int = 15, path=None):
    """Learned topic correlations (e.g. :func:`zoo.models.ctm.topic_correlations`): the matrix
    ``[K, K]`` as a heat map, and a graph of the ``n_pairs`` most correlated pairs (topics on a
    circle; red edges positive, blue negative, width by ``|r|``). ``labels``: one short string per
    topic (say its top three words), shown on the graph."""
    corr = _as_array(corr).astype(float)
    k = corr.shape[0]
    if corr.shape != (k, k):
        raise ValueError(f"corr must be a square [K, K] matrix, got shape {corr.shape}.")
    labels = [str(i) for i in range(k)] if labels is None else [str(s) for s in labels]
    fig, (ax_m, ax_g) = plt.subplots(1, 2, figsize=(11, 5))
    image = ax_m.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax_m.set_title("topic correlation matrix")
    ax_m.set_xlabel("topic")
    ax_m.set_ylabel("topic")
    fig.colorbar(image, ax=ax_m, fraction=0.046, pad=0.04)

    i, j = np.triu_indices(k, 1)
    order = np.argsort(-np.abs(corr[i, j]))[:n_pairs]
    angle = 2 * np.pi * np.arange(k) / k
    xy = np.stack([np.cos(angle), np.sin(angle)], 1)  # [K, 2] topics on a circle
    used = sorted(set(i[order]) | set(j[order]))
    for o in order:
        a, b, r = i[o], j[o], corr[i[o], j[o]]
        ax_g.plot(*xy[[a, b]].T, color="tab:red" if r > 0 else "tab:blue",
                  linewidth=0.5 + 4 * abs(r), alpha=0.7)
    ax_g.scatter(*xy[used].T, s=40, color="black", zorder=3)
    for t in used:  # each label outside its dot, running away from the circle
        x, y = xy[t]
        ha = "left" if x > 0.3 else "right" if x < -0.3 else "center"
        va = "bottom" if y > 0.3 else "top" if y < -0.3 else "center"
        ax_g.text(1.1 * x, 1.1 * y, labels[t], ha=ha, va=va, fontsize=8)
    ax_g.set_title(f"{len(order)} most correlated topic pairs")
    ax_g.set_xlim(-1.5, 1.5)
    ax_g.set_ylim(-1.3, 1.3)
    ax_g.set_aspect("equal")
    ax_g.axis("off")
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def plot_nested_levels(programs, objective, num_particles: int = 3000, path=None):
    """Weighted 2-d histograms of a nested-VI sampler's particles at every level (Figure 4 of
    Zimmermann et al. 2021), from one sweep of ``num_particles``."""
    from zoo.models.targets import RingGMM

    sweep = objective(programs, num_particles, keep_particles=True)
    num = len(sweep.particles)
    fig, axes = plt.subplots(1, num, figsize=(2.2 * num, 2.4), squeeze=False)
    lim = 14 if isinstance(programs.path.target, RingGMM) else 8
    betas = programs.schedule()
    for k, (ax, z, log_w) in enumerate(zip(axes[0], sweep.particles, sweep.log_weights)):
        weights, z = _as_array(torch.softmax(log_w, 0)), _as_array(z)
        ax.hist2d(z[:, 0], z[:, 1], bins=60, weights=weights,
                  range=[[-lim, lim], [-lim, lim]], cmap="viridis")
        ax.set_title(f"k={k}, β={betas[k].item():.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return _save(fig, path)
