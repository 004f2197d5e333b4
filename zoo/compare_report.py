r"""The report of ``zoo compare``: ``report.md`` and ``report.json`` from the scored cells, with
the figures of :mod:`zoo.compare_plots` and the posterior draws' arviz summaries; the statistics
are :mod:`zoo.compare_stats`'s."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyro
import torch

from zoo import compare_stats, runs
from zoo.compare_eval import Evaluation, forest_coords
from zoo.compare_folders import evaluate_cell, history
from zoo.compare_stats import DIGITS, LABELS, METRICS, PAIRED, _finite
from zoo.compare_train import Cell


@dataclass
class Comparison:
    """What :func:`compare` and :func:`compare_runs` return (and write to ``out``).

    :ivar dict report: the content of ``report.json``
    :ivar str markdown: ``report.md`` (shown by a notebook as the cell's output)
    :ivar dict figures: file name -> matplotlib Figure
    :ivar dict posteriors: cell id -> ``{"guide": InferenceData, "posterior": InferenceData}``
    """

    report: dict
    markdown: str
    figures: dict = field(default_factory=dict)
    posteriors: dict = field(default_factory=dict)
    out: Path | None = None

    @property
    def cells(self):
        """One row per cell (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame(self.report["cells"]).set_index("id")

    @property
    def table(self):
        """One row per configuration: ``<metric>`` (mean), ``<metric>_sd``, and ``vs_first``
        / ``vs_first_se`` / ``agree`` of the primary metric, paired by seed against the first
        configuration (whose ``agree`` reads ``reference``) (pandas DataFrame)."""
        import pandas as pd

        primary = self.report.get("primary_metric")
        rows = []
        for i, r in enumerate(self.report["configurations"]):
            row = {"configuration": r["configuration"], "seeds": len(r["seeds"])}
            for key, stats in r["metrics"].items():
                row[key], row[f"{key}_sd"] = stats["mean"], stats["sd"]
            paired = r.get("vs_reference", {}).get(primary)
            if i == 0:  # the reference: its difference from itself says nothing
                row.update(vs_first=0.0, vs_first_se=math.nan, agree="reference")
            elif paired:
                row.update(vs_first=paired["mean"], vs_first_se=paired["se"],
                           agree=f"{paired['agree']}/{paired['n']}")
            rows.append(row)
        return pd.DataFrame(rows).set_index("configuration")

    def _repr_markdown_(self):
        return self.markdown



# ------------------------------------------------------------------------------- markdown
def fmt(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or an empty string when it is missing or not finite."""
    if not _finite(value):
        return ""
    return f"{value:.{digits}f}"


def fmt_stats(stats: dict | None, digits: int = 2) -> str:
    """``mean ± sd`` over seeds (the mean alone for one seed)."""
    if not stats or not stats["n"]:
        return ""
    if stats["n"] == 1 or not _finite(stats["sd"]) or stats["sd"] == 0:
        return fmt(stats["mean"], digits)
    return f"{fmt(stats['mean'], digits)} ± {fmt(stats['sd'], digits)}"


def fmt_paired(paired: dict | None, digits: int = 3) -> tuple[str, str]:
    """``("+0.23 ± 0.03", "3/3")``: the mean paired difference ± its standard error over seeds,
    and the seeds that agree in sign."""
    if not paired or not paired["n"]:
        return "", ""
    se = f" ± {paired['se']:.{digits}f}" if _finite(paired["se"]) else ""
    return f"{paired['mean']:+.{digits}f}{se}", f"{paired['agree']}/{paired['n']}"


def _paired_digits(key: str) -> int:
    return min(DIGITS[key] + 1, 3)


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(line) + " |" for line in lines]]


def summary_table(rows: list[dict], primary: str | None) -> list[str]:
    """Mean ± sd over seeds per configuration, with the primary metric's paired difference."""
    shown = [(k, lb, d) for k, lb, d in METRICS if any(k in r["metrics"] for r in rows)]
    header = ["model", "guide", "objective", "seeds", *[lb for _, lb, _ in shown]]
    if any(r["active_units"] for r in rows):
        header.append("active units")
    if primary and len(rows) > 1:
        header += [f"Δ {LABELS[primary]} vs first", "agree"]
    lines = []
    for r in rows:
        line = [r["model"], r["guide"], objective_label(r), str(len(r["seeds"])),
                *[fmt_stats(r["metrics"].get(k), d) for k, _, d in shown]]
        if "active units" in header:
            line.append(", ".join(f"{s} {v:.1f}" for s, v in r["active_units"].items()))
        if primary and len(rows) > 1:
            line += (["(reference)", ""] if r is rows[0] else
                     list(fmt_paired(r["vs_reference"].get(primary), _paired_digits(primary))))
        lines.append(line)
    return _table(header, lines)


def paired_table(rows: list[dict]) -> list[str]:
    """Every paired metric of every configuration against the first."""
    keys = [k for k in PAIRED if any(k in r.get("vs_reference", {}) for r in rows[1:])]
    header = ["model", "guide", "objective"]
    for k in keys:
        header += [f"Δ {LABELS[k]} (seeds)", "agree"]
        if k == "is_log_likelihood":
            header.append("Δ log p(x) ± s.e. over test points")
    lines = []
    for r in rows[1:]:
        line = [r["model"], r["guide"], objective_label(r)]
        for k in keys:
            paired = r["vs_reference"].get(k)
            line += list(fmt_paired(paired, _paired_digits(k)))
            if k == "is_log_likelihood":
                points = (paired or {}).get("points")
                line.append(f"{points['mean']:+.3f} ± {points['se']:.3f}" if points else "")
        lines.append(line)
    return _table(header, lines)


def cells_table(cells: list[dict]) -> list[str]:
    """The report's table rows, one per trained cell (a cell that did not finish shows its status).
    """
    header = ["model", "guide", "objective", "seed", "epochs", "train s", "CPU s", "s/epoch",
              "CPU s/epoch", "held-out ELBO", "IS log p(x) (MC s.e.)", "ESS", "k-hat mean / max",
              "run"]
    lines = []
    for c in cells:
        if c.get("status", "finished") != "finished":
            lines.append([c["model"], c["guide"], objective_label(c), str(c["seed"]),
                          str(c.get("epochs", "")), "", "", "", "", c["status"], "", "", "",
                          f"`{c['run']}`"])
            continue
        is_ll = (f"{c['is_log_likelihood']:.3f} ({c['is_log_likelihood_stderr']:.3f})"
                 if _finite(c.get("is_log_likelihood")) else "")
        khat = (f"{fmt(c['khat_mean'])} / {fmt(c['khat_max'])}"
                if _finite(c.get("khat_mean")) else "")
        lines.append([c["model"], c["guide"], objective_label(c), str(c["seed"]),
                      str(c["epochs"]), fmt(c["train_seconds"], 1), fmt(c["cpu_seconds"], 1),
                      fmt(c["seconds_per_epoch"], 3), fmt(c["cpu_seconds_per_epoch"], 3),
                      fmt(c.get("heldout_elbo")), is_ll, fmt(c.get("ess_mean"), 0), khat,
                      f"`{c['run']}`"])
    return _table(header, lines)


def topics_table(side: dict) -> list[str]:
    """The rows of the side-by-side topics table of :func:`topics_side_by_side`: each topic's words,
    and beside the first configuration's the matched topics with their shared top words in brackets.
    """
    if not side:
        return []
    header = ["#", *[f"{lb} (seed {s})" for lb, s in zip(side["configurations"], side["seeds"])]]
    lines = []
    for k, row in enumerate(side["rows"]):
        cells = [f"{' '.join(e['words'])}" + ("" if i == 0 else f" ({e['shared']})")
                 for i, e in enumerate(row)]
        lines.append([str(k), *cells])
    return _table(header, lines)


def objective_label(row: dict) -> str:
    """An objective as the report names it: ``iwae, K = 5``."""
    k = row.get("objective_particles", 1)
    return row["objective"] + (f", K = {k}" if k and k > 1 else "")


def markdown(report: dict) -> str:
    """``report.md`` from ``report.json``'s content."""
    rows, cells = report["configurations"], report["cells"]
    primary = report.get("primary_metric")
    out = [f"# {report['title']}", "", *report["setup"], ""]
    out += ["## Per configuration (mean ± sd over seeds)", "", *summary_table(rows, primary), ""]
    if primary and len(rows) > 1:
        out += [f"Δ: the configuration's {LABELS[primary]} minus the first one's "
                f"(`{rows[0]['configuration']}`), paired by seed, ± its standard error over "
                "seeds (none with one seed); agree: seeds whose difference has the sign of the "
                "mean.", ""]
        out += ["## Paired differences from the first configuration", "", *paired_table(rows),
                ""]
    out += ["## Every cell", "", *cells_table(cells), ""]
    side = report.get("topics_side_by_side")
    if side:
        out += ["## Topics side by side", "",
                "Top words of the first configuration's topics and, beside each, the topic of "
                "every other configuration matched to it by top-word overlap (Hungarian "
                "matching; shared top-10 words in brackets).", "", *topics_table(side), ""]
    posterior = report.get("posterior")
    if posterior:
        out += ["## Posterior draws (arviz)", "", *posterior["text"], ""]
        if posterior.get("summary"):
            out += posterior["summary"] + [""]
        out += [*posterior.get("after", []), ""] if posterior.get("after") else []
    if report.get("figures"):
        out += ["## Figures", ""]
        out += [f"![{name}]({name})" for name in report["figures"]] + [""]
    out += ["## Notes", "", *[f"- {note}" for note in report["notes"]], ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------ report
def setup_lines(cells: list[Cell], spec: dict | None, evaluation: Evaluation) -> list[str]:
    """The report's opening lines: the data split, the budget and training settings (from
    ``spec``, None for run folders trained elsewhere), the scoring, the machine and the command,
    so that a table read later says how it was made."""
    c = cells[0]
    dataset = c.dataset or runs.load_data(c.data_spec)
    lines = [f"Data: `{c.data_spec['name']}`"
             + (f" ({c.data_spec['options']})" if c.data_spec.get("options") else "")
             + f", {dataset.meta.get('split', '')}; the same split for every cell."]
    if spec is not None:
        budget = (f"{spec['budget_seconds']:g} s of training per cell (evaluation excluded)"
                  if spec["budget_seconds"] else f"{spec['epochs']} epochs per cell")
        cfg = c.config
        warm = (f"; KL warm-up over the first {spec['kl_warmup_fraction']:.0%} of the budget"
                if spec["kl_warmup_fraction"] else "")
        lines.append(f"Budget: {budget}, the cells taking turns epoch by epoch{warm}. Seeds "
                     f"{', '.join(map(str, spec['seeds']))}. Training: batch {cfg.batch_size}, "
                     f"Adam lr {cfg.lr:g}, betas {tuple(cfg.betas)}"
                     + (f", clip {cfg.clip_norm:g}" if cfg.clip_norm else "")
                     + "".join(f", {k} {v}" for k, v in spec["train_options"].items()
                               if k not in ("batch_size", "lr", "betas", "clip_norm"))
                     + ".")
        if spec["model_options"] or spec["guide_options"]:
            lines.append(f"Model options {spec['model_options']}, guide options "
                         f"{spec['guide_options']} (each to every model or guide taking it).")
    lines.append(
        f"Evaluation (every cell alike, seed {evaluation.seed}): held-out ELBO with "
        f"{evaluation.elbo_particles} samples per point"
        + (f"; IS log p(x) with K = {evaluation.num_particles:,} in chunks of "
           f"{evaluation.chunk_size}" if evaluation.num_particles else "")
        + "; s/epoch and CPU s/epoch: wall and CPU seconds of training per epoch.")
    lines.append(f"Machine: {platform.machine()} ({os.cpu_count()} cores visible), torch "
                 f"{torch.__version__} with {torch.get_num_threads()} thread(s), pyro-ppl "
                 f"{pyro.__version__}.")
    if spec is not None and spec.get("command"):
        lines.append(f"Command: `{spec['command']}`")
    return lines


NOTES = [
    "Paired differences are by seed (the same seed means the same initialization seed and "
    "minibatch order); their standard error needs two seeds or more. The s.e. over test points "
    "is the test-set noise of the same difference (the per-point form of arviz's `dse`).",
    "`az.compare` (LOO, WAIC) does not apply: it needs pointwise log-likelihoods "
    "log p(x_n | θ_s) under posterior draws θ_s of parameters *shared* by the models; here "
    "every cell is its own trained model (point-estimate weights, per-point latents), and a "
    "held-out point's predictive density is p(x_n) itself, which the importance sampler "
    "estimates directly. The held-out elpd difference is the Δ log p(x) column (per point), "
    "its dse the s.e. over test points; PSIS k-hat, arviz's diagnostic for such weights, is "
    "reported per cell.",
    "Posterior draws: for a few held-out points, q(z|x) (the guide) and p(z|x) by "
    "sampling-importance-resampling with the guide as proposal, as arviz InferenceData "
    "(`posterior/<cell>.guide.nc`, `.posterior.nc`); `az.plot_forest` sets them side by side "
    "and `az.summary(kind='stats')` gives their means and sds. R-hat and MCMC ESS do not apply "
    "(one chain of resampled, not Markov, draws); the importance ESS per point is in the "
    "resampled draws' `sample_stats`. Latent coordinates are not comparable *across* cells: "
    "every trained model has its own latent space (a rotation of z gives the same VAE), so the "
    "plot compares q with p within each cell.",
    "Amortization gap: what refining each held-out posterior at the fixed model recovers "
    "over the encoder. For topic models with the `dirichlet` or `logistic_normal` guide, log "
    "perplexity minus log refined perplexity, in nats per word; for the other models with a "
    "Gaussian-family guide, the refined ELBO minus the held-out ELBO of the encoder, in nats per "
    "data point, on the first held-out points (`zoo.infer.amortization`), and beside it the "
    "approximation gap, log p(x) minus the refined ELBO on the same points: the two split the "
    "inference gap log p(x) − ELBO (Cremer et al., 2018).",
    "CPU seconds are this process's (one thread): other jobs on shared cores inflate wall "
    "time, not CPU time.",
]


def build(cells, out, evaluation, setup, status, progress, *, training, budget,
          command, cell_figures=False) -> Comparison:
    """Score every cell (a diverged one, named in ``status``, only reported), gather the
    statistics, draw the figures and write ``report.md``, ``report.json`` and the PNGs to
    ``out`` (nothing is written when ``out`` is None: ``zoo compare RUN ...`` without
    ``--out``). ``training``: the cells were trained by this comparison, so a fresh score is
    also each cell's ``summary.json``; ``budget``: curves against training seconds, not
    epochs."""
    from zoo import compare_plots
    from zoo.compare_train import Bar

    results, posteriors = [], {}
    bar = Bar(len(cells), "cell", "scoring", progress)
    for cell in cells:
        row = {"id": cell.id, "configuration": cell.label, "model": cell.model,
               "guide": cell.guide, "objective": cell.objective.name,
               "objective_particles": cell.objective.num_particles, "seed": cell.seed,
               "run": str(cell.run.relative_to(out) if out is not None
                          and cell.run.is_relative_to(out) else cell.run)}
        if cell.id in status:
            row.update(status=f"diverged: {status[cell.id]}", epochs=len(history(cell)))
        else:
            result, draws = evaluate_cell(cell, out, evaluation, training, cell_figures)
            row.update(status="finished", **result)
            if draws is not None:
                posteriors[cell.id] = draws
        results.append(row)
        bar.update(1, f"{cell.label}, seed {cell.seed}")
    bar.close()
    rows = compare_stats.configuration_rows(results)
    primary = compare_stats.primary_metric(rows)
    report = {"title": f"zoo compare: {', '.join(dict.fromkeys(c.model for c in cells))} on "
                       f"{cells[0].data_spec['name']}",
              "setup": setup, "command": command, "primary_metric": primary,
              "evaluation": asdict(evaluation),
              "configurations": rows,
              "cells": [{k: v for k, v in r.items()
                         if k not in ("pointwise_log_likelihood", "unit_variances")}
                        for r in results],
              "topics_side_by_side": compare_stats.topics_side_by_side(results),
              "notes": NOTES}
    figures = {}
    curves = [(c.label, c.seed, history(c)) for c in cells]
    if any(h for _, _, h in curves):
        figures["training_curves.png"] = compare_plots.plot_training_curves(
            curves, x="seconds" if budget else "epoch")
    if primary and rows:
        figures["log_likelihood.png" if primary == "is_log_likelihood" else
                f"{primary}.png"] = compare_plots.plot_metric_dots(
            rows, results, primary, LABELS[primary])
    if report["topics_side_by_side"]:
        figures["topics.png"] = compare_plots.plot_topics_side_by_side(
            report["topics_side_by_side"])
    report["posterior"] = _posterior_section(cells, results, posteriors, evaluation, figures)
    report["figures"] = list(figures)
    text = markdown(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, fig in figures.items():
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
        runs.atomic_write_text(text, out / "report.md")
        runs.write_json(report, out / "report.json")
    import matplotlib.pyplot as plt

    for fig in figures.values():  # kept in the result, not left to a notebook to show twice
        plt.close(fig)
    return Comparison(report=report, markdown=text, figures=figures, posteriors=posteriors,
                      out=out)


def _posterior_section(cells, results, posteriors, evaluation, figures) -> dict | None:
    """The forest plot and the summary table of q and p draws, first seed of each
    configuration."""
    import arviz as az

    from zoo import compare_plots

    if not evaluation.posterior_points:
        return None
    firsts, missing = {}, []
    for cell, result in zip(cells, results):
        if cell.id in posteriors:
            firsts.setdefault(cell.label, (cell, result))
        elif result.get("status") == "finished":
            missing.append(cell.label)
    missing = [label for label in dict.fromkeys(missing) if label not in firsts]
    after = []
    if missing:
        after.append(f"Not drawn for {', '.join(missing)}: a global latent makes the "
                    "importance weights joint over the data, and resampled draws of a few "
                    "points' posterior then degenerate.")
    if not firsts:
        return {"text": after}
    panels, table = [], []
    for label, (cell, result) in firsts.items():
        coords = forest_coords(result, evaluation.posterior_coords)
        draws = posteriors[cell.id]
        panels.append((f"{label}, seed {cell.seed}", draws["guide"], draws["posterior"], coords))
        for site, units in coords.items():
            sel = {"data": list(range(min(2, evaluation.posterior_points))),
                   f"{site}_dim_0": units}
            q = az.summary(draws["guide"], var_names=[site], coords=sel, kind="stats")
            p = az.summary(draws["posterior"], var_names=[site], coords=sel, kind="stats")
            for name in q.index:
                table.append([label, name, *(f"{frame.loc[name, stat]:.2f}" for frame in (q, p)
                                             for stat in ("mean", "sd"))])
    figures["posterior_forest.png"] = compare_plots.plot_posterior_forest(panels)
    text = [f"For the first {evaluation.posterior_points} held-out points of each "
            f"configuration's first seed: {evaluation.posterior_samples} draws of q(z|x) and of "
            f"p(z|x) (resampled from {evaluation.posterior_particles} importance particles), in "
            "`posterior_forest.png`; the coordinates are each site's most active units. Where q "
            "is narrower than p or off its centre, the guide is the limit. "
            "`az.summary(kind='stats')` of the first two points:"]
    summary = _table(["configuration", "coordinate", "q mean", "q sd",
                                     "p mean", "p sd"], table)
    return {"text": text, "summary": summary, "after": after}
