r"""The run folders of ``zoo compare``: reading folders trained elsewhere (``zoo compare RUN
...``), the data check that refuses runs on other data or splits, and each cell's scores, kept
in ``DIR/evaluations/`` while its checkpoint is unchanged."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch

from zoo import runs
from zoo.compare_eval import Evaluation, posterior_draws, score, training_times
from zoo.compare_train import Cell, ObjectiveSpec

STATUS = "status.json"  # cells that diverged, with the message


# ------------------------------------------------------------------------- run folders
def data_fingerprint(dataset) -> str:
    """SHA-1 of both splits' contents (a dynamically binarized split by its probabilities): two
    runs compare only when their train and test data are the same."""
    from zoo.data.dataset import TensorSplit
    from zoo.data.text import SparseCountsSplit

    digest = hashlib.sha1(f"{dataset.kind} {dataset.num_features}".encode())
    for split in (dataset.train, dataset.test):
        digest.update(str(len(split)).encode())
        if isinstance(split, TensorSplit):
            digest.update(split.values.contiguous().numpy().tobytes())
        elif isinstance(split, SparseCountsSplit):
            for array in (split.counts.indptr, split.counts.indices, split.counts.data):
                digest.update(array.tobytes())
        else:  # any other split, materialized in order
            for start in range(0, len(split), 1000):
                index = torch.arange(start, min(start + 1000, len(split)))
                digest.update(split.batch(index, torch.Generator().manual_seed(0))
                              .numpy().tobytes())
    return digest.hexdigest()


def cells_from_runs(run_dirs) -> list[Cell]:
    """A :class:`Cell` per run folder, refusing nested-VI runs, runs on different data or
    splits, and two runs of one configuration with the same seed."""
    run_dirs = [Path(r) for r in run_dirs]
    if not run_dirs:
        raise ValueError("name at least one run folder to compare.")
    configs, prints, raw = [], {}, {}
    for run in run_dirs:
        config = runs.read_config(run)
        if "model" not in config:
            raise ValueError(f"{run}: not a model/guide run (a `zoo nvi` run?); `zoo compare` "
                             "compares runs of `zoo train` or `zoo compare`.")
        if not (run / runs.CHECKPOINT).exists():
            raise ValueError(f"{run}: no {runs.CHECKPOINT} (train it first).")
        key = json.dumps(config["data"], sort_keys=True)
        if key not in prints:
            raw[key] = runs.load_data(config["data"])
            prints[key] = data_fingerprint(raw[key])
        configs.append((run, config, key))
    first_run, first_config, first_key = configs[0]
    for run, config, key in configs[1:]:
        if prints[key] != prints[first_key]:
            raise ValueError(
                f"{run} was trained on other data than {first_run}: data {config['data']} "
                f"(split: {raw[key].meta.get('split', '?')}; {len(raw[key].train)} train / "
                f"{len(raw[key].test)} test) against {first_config['data']} (split: "
                f"{raw[first_key].meta.get('split', '?')}; {len(raw[first_key].train)} / "
                f"{len(raw[first_key].test)}). A comparison needs one data split for all runs.")
    groups: dict[str, list] = {}
    for run, config, _ in configs:
        train = {k: v for k, v in config["train"].items() if k not in ("seed", "device")}
        group = json.dumps([config["model"], config["model_config"], config["guide"],
                            config["guide_options"], train], sort_keys=True)
        groups.setdefault(group, []).append((run, config))
    labels = _distinct_labels(groups)
    cells, seen = [], {}
    for group, members in groups.items():
        for run, config in members:
            seed = config["train"]["seed"]
            if (group, seed) in seen:
                raise ValueError(f"{run} and {seen[(group, seed)]} are the same configuration "
                                 f"with the same seed {seed}: pass one of them.")
            seen[(group, seed)] = run
            objective = ObjectiveSpec(config["train"]["objective"],
                                      config["train"].get("num_particles", 1))
            cell = Cell(model=config["model"], guide=config["guide"], objective=objective,
                        seed=seed, run=run, data_spec=config["data"], label=labels[group],
                        cell_id=f"run{run_dirs.index(run)}.{_safe(run.name)}")
            cells.append(cell)
    return cells


def _distinct_labels(groups: dict) -> dict:
    """``model · guide · objective``, with the settings that tell apart configurations that
    would share it."""
    base = {}
    for group in groups:
        model, _, guide, _, train = json.loads(group)
        k = train.get("num_particles", 1)
        base[group] = f"{model} · {guide} · {train['objective']}" + (f" K={k}" if k > 1 else "")
    labels = {}
    for group, label in base.items():
        twins = [g for g in groups if base[g] == label and g != group]
        if not twins:
            labels[group] = label
            continue
        mine = _flat(json.loads(group))
        differ = sorted(k for k in mine if any(_flat(json.loads(t)).get(k) != mine[k]
                                               for t in twins))
        labels[group] = f"{label} ({', '.join(f'{k}={mine[k]}' for k in differ)})"
    return labels


def _flat(group) -> dict:
    _, model_config, _, guide_options, train = group
    return {**model_config, **guide_options, **train}


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "run"


def read_status(out: Path) -> dict:
    """The comparison's status file in ``out``, as a dict (empty when there is none yet)."""
    path = out / STATUS
    return json.loads(path.read_text()) if path.exists() else {}


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -------------------------------------------------------------------------- evaluation
def evaluate_cell(cell: Cell, out: Path | None, settings: Evaluation, training: bool,
                  cell_figures: bool = True):
    """``(result, posterior draws or None)`` of one cell, from ``out/evaluations`` while the
    checkpoint and the settings are those it was scored with; a fresh score of a training
    cell is also its ``summary.json`` (and, with ``cell_figures``, its figures) as ``zoo
    train`` writes them."""
    import arviz as az

    sha = _sha1(cell.run / runs.CHECKPOINT)
    cache = out / "evaluations" / f"{cell.id}.json" if out is not None else None
    draws_path = {k: out / "posterior" / f"{cell.id}.{k}.nc" for k in ("guide", "posterior")} \
        if out is not None else {}
    if cache is not None and cache.exists():
        cached = json.loads(cache.read_text())
        if cached["checkpoint_sha1"] == sha and cached["settings"] == asdict(settings):
            draws = ({k: az.from_netcdf(p) for k, p in draws_path.items()}
                     if all(p.exists() for p in draws_path.values()) else None)
            return cached["result"], draws
    model, guide, dataset, _, ckpt = runs.load_run(cell.run)  # as `zoo evaluate` reads it
    result = {**training_times(ckpt["history"]), **score(model, guide, dataset, settings)}
    pair = posterior_draws(model, guide, dataset, settings)
    draws = None if pair is None else {"guide": pair[0], "posterior": pair[1]}
    if out is not None:
        if draws is not None:
            draws_path["guide"].parent.mkdir(parents=True, exist_ok=True)
            for k, idata in draws.items():
                idata.to_netcdf(str(draws_path[k]))
        cache.parent.mkdir(parents=True, exist_ok=True)
        runs.write_json({"checkpoint_sha1": sha, "settings": asdict(settings),
                         "result": result}, cache)
    if training:
        from zoo import cli

        runs.write_summary(cell.run, {k: v for k, v in result.items()
                                      if k not in ("pointwise_log_likelihood", "unit_variances")})
        if cell_figures:
            cli.write_figures(cell.run, model, guide, dataset, ckpt["history"])
    return result, draws


def history(cell: Cell) -> list[dict]:
    """The metrics of a cell's run, one dict per line of its metrics file (empty before the
    first epoch)."""
    path = cell.run / runs.METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
