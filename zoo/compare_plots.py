"""Figures of ``zoo compare``: training curves overlaid, a dot plot of the compared metric with
error bars, topics side by side, and arviz forest plots of posterior draws. Each function
returns the Figure; nothing here selects a backend (as :mod:`zoo.plots`)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

PANELS = (("train_loss", "training loss (each objective's)"), ("heldout_elbo", "held-out ELBO"),
          ("perplexity", "held-out perplexity"), ("npmi", "NPMI"))


def _colors(labels):
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {label: cycle[i % len(cycle)] for i, label in enumerate(dict.fromkeys(labels))}


def plot_training_curves(curves, x: str = "epoch"):
    """Every cell's curves on shared axes, one colour per configuration (its seeds alike).

    :param curves: ``[(configuration label, seed, history), ...]``, a history being the
        engine's records (``epoch``, ``seconds``, ``train_loss``, ``heldout_elbo``, ...)
    :param x: ``"epoch"`` or ``"seconds"`` (cumulative training seconds)
    """
    curves = [(label, seed, h) for label, seed, h in curves if h]
    if not curves:
        raise ValueError("no training history to plot.")
    panels = [(k, t) for k, t in PANELS if any(r.get(k) is not None for _, _, h in curves
                                                  for r in h)]
    colors = _colors(label for label, _, _ in curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, title) in zip(axes.flat, panels):
        seen = set()
        for label, _, history in curves:
            along = (np.cumsum([r["seconds"] for r in history]) if x == "seconds"
                     else [r["epoch"] for r in history])
            points = [(a, r[key]) for a, r in zip(along, history) if r.get(key) is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, color=colors[label], linewidth=1.0, alpha=0.8,
                    label=None if label in seen else label)
            seen.add(label)
        ax.set_xlabel("training seconds" if x == "seconds" else "epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if key == "train_loss":
            low, high = np.nanpercentile([r[key] for _, _, h in curves for r in h
                                          if r.get(key) is not None], [1, 95])
            ax.set_ylim(low - 0.05 * (high - low), high)  # the first epochs off the top
        if key == "heldout_elbo":
            low, high = np.nanpercentile([r[key] for _, _, h in curves for r in h
                                          if r.get(key) is not None], [5, 100])
            ax.set_ylim(low, high + 0.05 * (high - low))
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_metric_dots(rows, cells, key: str, label: str):
    """Left: every seed of every configuration (small dots) and their mean ± sd (large dot,
    bar; the mean alone for one seed). Right: the paired difference from the first
    configuration ± its standard error over seeds (over test points, hollow, where only that
    exists). ``rows`` are :func:`zoo.compare_stats.configuration_rows`, ``cells`` the cells."""
    names = [r["configuration"] for r in rows]
    y = np.arange(len(rows))[::-1]
    colors = _colors(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(rows) + 1.6), sharey=True,
                                      gridspec_kw={"width_ratios": [1.4, 1]})
    for yi, r in zip(y, rows):
        values = [c[key] for c in cells if c["configuration"] == r["configuration"]
                  and c.get(key) is not None and math.isfinite(c[key])]
        left.scatter(values, [yi] * len(values), s=12, color=colors[r["configuration"]],
                     alpha=0.5, zorder=2)
        stats = r["metrics"].get(key)
        if stats and stats["n"]:
            sd = stats["sd"] if math.isfinite(stats["sd"]) else 0.0
            left.errorbar(stats["mean"], yi, xerr=sd, fmt="o", color=colors[r["configuration"]],
                          markersize=7, capsize=3, zorder=3)
        paired = r.get("vs_reference", {}).get(key)
        if paired and paired["n"] and r is not rows[0]:
            se, hollow = paired["se"], False
            if not math.isfinite(se) and paired.get("points"):
                se, hollow = paired["points"]["se"], True
            right.errorbar(paired["mean"], yi, xerr=se if math.isfinite(se) else 0.0, fmt="o",
                           color=colors[r["configuration"]], capsize=3, markersize=7,
                           markerfacecolor="white" if hollow else colors[r["configuration"]])
    left.set_yticks(y, names, fontsize=8)
    left.set_xlabel(f"{label}\n(dots: seeds; bar: ± sd)")
    left.grid(alpha=0.3, axis="x")
    right.axvline(0.0, color="gray", linewidth=1)
    right.set_xlabel(f"Δ vs {names[0]}\n(± s.e.; hollow: over test points)")
    right.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def plot_topics_side_by_side(side: dict, num_words: int = 5):
    """The first configuration's topics (rows) and each configuration's matched topic (columns),
    top words as text, shared top-10 words in brackets
    (:func:`zoo.compare_stats.topics_side_by_side`)."""
    labels, rows = side["configurations"], side["rows"]
    fig, ax = plt.subplots(figsize=(3.2 * len(labels) + 0.6, 0.32 * len(rows) + 0.9))
    ax.axis("off")
    for j, label in enumerate(labels):
        ax.text(j + 0.02, len(rows) + 0.2, label, fontsize=8, weight="bold", va="bottom")
        for i, row in enumerate(rows):
            entry = row[j]
            text = " ".join(entry["words"][:num_words]) + ("" if j == 0 else
                                                           f"  ({entry['shared']})")
            ax.text(j + 0.02, len(rows) - i - 0.5, f"{i if j == 0 else entry['topic']}: {text}",
                    fontsize=7, va="center", family="monospace")
    ax.set_xlim(0, len(labels))
    ax.set_ylim(0, len(rows) + 0.8)
    fig.tight_layout()
    return fig


def plot_posterior_forest(panels, hdi_prob: float = 0.9):
    """``az.plot_forest`` of q(z|x) against p(z|x) for each panel.

    :param panels: ``[(title, guide InferenceData, posterior InferenceData, {site: [units]}),
        ...]``: the draws of a few held-out points (dim ``data``) and the units to show
    """
    import arviz as az

    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.6 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (title, q, p, coords) in zip(axes.flat, panels):
        sites = list(coords)
        sel = {"data": list(q.posterior["data"].values)}
        for site, units in coords.items():
            sel[f"{site}_dim_0"] = units
        az.plot_forest([q, p], model_names=["q(z|x)", "p(z|x), SIR"], var_names=sites,
                       coords=sel, combined=True, hdi_prob=hdi_prob, ax=ax,
                       textsize=8, markersize=4)
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig
