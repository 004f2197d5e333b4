r"""The statistics of ``zoo compare``: mean and spread over seeds, paired differences from the
first configuration, topics matched across configurations.

A *configuration* is a (model, guide, objective) triple; a *cell* is a configuration trained
from one seed. Cells of the same seed share the data split, the minibatch order's seed and the
initialization seed, so the fair comparison is *paired by seed* [1]: for configuration
:math:`g` and the first configuration :math:`r`, with :math:`d_s = m_{g,s} - m_{r,s}` over the
:math:`S` seeds both have,

.. math::

    \bar d = \frac1S \sum_s d_s, \qquad
    \operatorname{se}(\bar d) = \frac{\operatorname{sd}(d)}{\sqrt S}, \qquad
    \text{agree} = \#\{s : \operatorname{sign} d_s = \operatorname{sign} \bar d\},

(``sd`` with :math:`S - 1` in the denominator), which measures how much the difference moves
with the training seed. The importance-sampled :math:`\log \hat p(x_n)` is also paired *by test
point*: :math:`\delta_{n,s} = \log\hat p_g(x_n) - \log\hat p_r(x_n)` in seed :math:`s` has
mean :math:`\bar\delta_s` and standard error :math:`\operatorname{sd}_n(\delta_{\cdot,s}) /
\sqrt N`; over seeds the mean of the :math:`\bar\delta_s` has standard error
:math:`\sqrt{\sum_s \operatorname{se}_s^2} / S`. That one measures how much the difference
would move with another test set of the same size (it is the per-point form of the ``dse``
that ``arviz.compare`` reports for an elpd difference [2]), not with another training seed.

**References:**

1. *Statistical Comparisons of Classifiers over Multiple Data Sets*, J. Demšar, JMLR 7 (2006)
2. *Practical Bayesian model evaluation using leave-one-out cross-validation and WAIC*,
   A. Vehtari, A. Gelman, J. Gabry (2017), arXiv:1507.04544
"""

from __future__ import annotations

import math
import statistics

import numpy as np

#: (key, column label, digits) of the per-configuration table; a metric shows when a cell has it
METRICS = (
    ("epochs", "epochs", 0),
    ("seconds_per_epoch", "s/epoch", 3),
    ("cpu_seconds_per_epoch", "CPU s/epoch", 3),
    ("heldout_elbo", "held-out ELBO", 2),
    ("is_log_likelihood", "IS log p(x)", 3),
    ("ess_mean", "ESS", 0),
    ("khat_mean", "k-hat mean", 2),
    ("khat_max", "k-hat max", 2),
    ("inference_gap", "log p(x) − ELBO", 2),
    ("perplexity", "perplexity", 0),
    ("perplexity_refined", "refined perplexity", 0),
    ("refined_elbo", "refined ELBO", 2),
    ("amortization_gap", "amortization gap", 3),
    ("approximation_gap", "approximation gap", 2),
    ("npmi", "NPMI", 3),
    ("diversity", "diversity", 2),
)
#: metrics paired by seed against the first configuration, most telling first
PAIRED = ("is_log_likelihood", "heldout_elbo", "perplexity_refined", "perplexity", "npmi")
LABELS = {key: label for key, label, _ in METRICS}
DIGITS = {key: digits for key, _, digits in METRICS}


# ------------------------------------------------------------------------------ statistics
def mean_sd(values) -> dict:
    """``{"n", "mean", "sd"}`` of finite ``values``; ``sd`` (denominator n - 1) is NaN for one."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(values)
    return {"n": n, "mean": statistics.fmean(values) if n else math.nan,
            "sd": statistics.stdev(values) if n > 1 else math.nan}


def paired_difference(values: dict, reference: dict) -> dict:
    """Paired by seed: ``values`` and ``reference`` map seed -> metric. Returns ``n`` (seeds in
    both), the ``differences`` ``d_s`` in seed order, their ``mean``, ``sd``, the standard
    error ``se = sd / sqrt(n)`` (NaN for one seed), and ``agree``: how many ``d_s`` have the
    sign of the mean (0 when the mean is 0)."""
    seeds = sorted(s for s in set(values) & set(reference)
                   if _finite(values[s]) and _finite(reference[s]))
    d = [float(values[s]) - float(reference[s]) for s in seeds]
    stats = mean_sd(d)
    sign = np.sign(stats["mean"]) if d else 0.0
    return {**stats, "seeds": seeds, "differences": d,
            "se": stats["sd"] / math.sqrt(stats["n"]) if stats["n"] > 1 else math.nan,
            "agree": int(sum(np.sign(x) == sign for x in d)) if sign else 0}


def paired_points(values: dict, reference: dict) -> dict:
    """Paired by test point: ``values`` and ``reference`` map seed -> per-point estimates
    ``[N]``. Returns the mean over seeds of each seed's mean difference, its standard error
    over test points ``sqrt(sum_s se_s^2) / S`` with ``se_s = sd_n(delta) / sqrt(N)``, and
    the per-seed ``means`` and ``ses``."""
    seeds = sorted(s for s in set(values) & set(reference)
                   if values[s] is not None and reference[s] is not None)
    means, ses = [], []
    for s in seeds:
        ours, theirs = np.asarray(values[s], float), np.asarray(reference[s], float)
        if ours.shape != theirs.shape or ours.size < 2:
            raise ValueError(f"seed {s}: per-point estimates of different lengths or fewer "
                             "than 2 points; were the runs scored on the same test set?")
        delta = ours - theirs
        means.append(float(delta.mean()))
        ses.append(float(delta.std(ddof=1) / math.sqrt(delta.size)))
    n = len(seeds)
    return {"n": n, "seeds": seeds, "means": means, "ses": ses,
            "mean": float(np.mean(means)) if n else math.nan,
            "se": math.sqrt(sum(se * se for se in ses)) / n if n else math.nan}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def configuration_rows(cells: list[dict]) -> list[dict]:
    """One row per configuration, in the order of first appearance: ``metrics`` (mean, sd over
    seeds for every metric of :data:`METRICS`), ``active_units`` (mean per site), and
    ``vs_reference``: each metric of :data:`PAIRED` paired by seed against the first
    configuration (``is_log_likelihood`` also by test point, under ``"points"``)."""
    groups: dict[str, list[dict]] = {}
    for cell in cells:
        if cell.get("status", "finished") == "finished":
            groups.setdefault(cell["configuration"], []).append(cell)
    rows = []
    for members in groups.values():
        first = members[0]
        row = {key: first[key] for key in ("configuration", "model", "guide", "objective",
                                           "objective_particles")}
        row["seeds"] = [c["seed"] for c in members]
        row["metrics"] = {key: mean_sd([c.get(key) for c in members]) for key, _, _ in METRICS
                          if any(_finite(c.get(key)) for c in members)}
        sites = first.get("active_units") or {}
        row["active_units"] = {site: statistics.fmean(c["active_units"][site] for c in members)
                               for site in sites}
        rows.append(row)
    if not rows:
        return rows
    reference = groups[rows[0]["configuration"]]
    for row in rows:
        members = groups[row["configuration"]]
        row["vs_reference"] = {}
        for key in PAIRED:
            ours = {c["seed"]: c.get(key) for c in members}
            theirs = {c["seed"]: c.get(key) for c in reference}
            if any(_finite(v) for v in ours.values()) and any(_finite(v) for v in theirs.values()):
                row["vs_reference"][key] = paired_difference(ours, theirs)
        ours = {c["seed"]: c.get("pointwise_log_likelihood") for c in members}
        theirs = {c["seed"]: c.get("pointwise_log_likelihood") for c in reference}
        if "is_log_likelihood" in row["vs_reference"] and all(
                v is not None for v in [*ours.values(), *theirs.values()]):
            row["vs_reference"]["is_log_likelihood"]["points"] = paired_points(ours, theirs)
    return rows


def primary_metric(rows: list[dict]) -> str | None:
    """The metric the comparison is about: log p(x) where every configuration has it, else the
    (refined) perplexity, else the held-out ELBO."""
    for key in ("is_log_likelihood", "perplexity_refined", "perplexity", "heldout_elbo"):
        if rows and all(key in row["metrics"] for row in rows):
            return key
    return None


# -------------------------------------------------------------------------- topics matched
def align_topics(reference: list[list[str]], other: list[list[str]]) -> list[tuple[int, int]]:
    """For each reference topic, the topic of ``other`` it is matched to and how many top words
    they share: a maximum-overlap one-to-one matching (Hungarian algorithm,
    ``scipy.optimize.linear_sum_assignment``) of the two topic sets' top words."""
    from scipy.optimize import linear_sum_assignment

    overlap = np.array([[len(set(a) & set(b)) for b in other] for a in reference])
    rows, cols = linear_sum_assignment(-overlap)
    match = dict(zip(rows.tolist(), cols.tolist()))
    return [(match.get(k, -1), int(overlap[k, match[k]]) if k in match else 0)
            for k in range(len(reference))]


def topics_side_by_side(cells: list[dict], num_topics: int = 10, num_words: int = 5) -> dict:
    """``{"configurations": [...], "rows": [[(words, shared), ...] per topic]}``: the first
    ``num_topics`` topics of the first configuration's first seed and, beside them, the topic of
    every other configuration's first seed matched to each (:func:`align_topics`)."""
    firsts: dict[str, dict] = {}
    for cell in cells:
        if cell.get("top_words") and cell.get("status", "finished") == "finished":
            firsts.setdefault(cell["configuration"], cell)
    if not firsts:
        return {}
    labels = list(firsts)
    reference = firsts[labels[0]]["top_words"]
    matches = {label: align_topics(reference, firsts[label]["top_words"]) for label in labels}
    rows = []
    for k in range(min(num_topics, len(reference))):
        row = []
        for label in labels:
            j, shared = matches[label][k]
            words = firsts[label]["top_words"][j][:num_words] if j >= 0 else []
            row.append({"topic": j, "words": words, "shared": shared})
        rows.append(row)
    return {"configurations": labels, "seeds": [firsts[lb]["seed"] for lb in labels],
            "rows": rows}
