r"""``zoo nvi train | evaluate``: train and evaluate a nested-VI sampler on an annealing target.

A run folder holds ``config.json``, ``checkpoint.pt`` (written atomically at every evaluation,
with every RNG state), ``metrics.jsonl`` (one JSON line per evaluation: iteration,
:math:`\log\hat Z`, ESS in percent, the schedule), ``summary.json`` and ``levels.png``, the
weighted samples at every level (Figure 4 of [1]). ``--resume`` continues a run from its last
checkpoint exactly as if it had not stopped (``--iterations`` may raise its total).

Example::

    zoo nvi train --target ring --num-levels 8 --objective nvi-rkl --resample \
        --schedule learned --iterations 20000 --out runs/nvir_star_k8
    zoo nvi evaluate runs/nvir_star_k8

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro
import torch
from tqdm import tqdm

from zoo.infer.nested import DIVERGENCES, NestedObjective, evaluate_nested
from zoo.infer.nested_programs import SCHEDULES, NestedPrograms
from zoo.infer.resampling import RESAMPLERS
from zoo.models.targets import INIT_SCALES, TARGETS, GeometricPath, get_target
from zoo.train import atomic_save, atomic_write_text, rng_state, set_rng_state

TRAIN_KEYS = ("target", "num_levels", "num_particles", "objective", "resample", "resampler",
              "schedule", "iterations", "lr", "hidden_dim", "eval_every", "eval_particles",
              "eval_batches", "seed")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``nvi`` with its ``train`` and ``evaluate`` actions to ``subparsers``."""
    parser = subparsers.add_parser("nvi", help="nested variational inference on annealing targets")
    actions = parser.add_subparsers(dest="nvi_action", required=True)
    train = actions.add_parser("train", help="train a nested-VI sampler and write a run folder")
    train.add_argument("--target", choices=sorted(TARGETS), default="ring")
    train.add_argument("--num-levels", type=int, default=4,
                       help="K, counting the initial N(0, s^2)")
    train.add_argument("--num-particles", type=int, default=None,
                       help="training particles (default 288 // K, the paper's budget)")
    train.add_argument("--objective", choices=DIVERGENCES, default="nvi-rkl")
    train.add_argument("--resample", action=argparse.BooleanOptionalAction, default=False,
                       help="resample between levels (NVIR)")
    train.add_argument("--resampler", choices=RESAMPLERS, default="systematic")
    train.add_argument("--schedule", choices=SCHEDULES, default="linear",
                       help="fixed linear beta, or learned monotone beta (NVI*)")
    train.add_argument("--iterations", type=int, default=None, help="total (default 2000)")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--hidden-dim", type=int, default=50)
    train.add_argument("--eval-every", type=int, default=500)
    _add_eval_options(train)
    train.add_argument("--out", type=Path, required=True, help="run folder to write")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly, with its config.json")
    evaluate = actions.add_parser("evaluate", help="recompute log Z-hat and ESS from a run")
    evaluate.add_argument("run", type=Path, help="run folder written by `zoo nvi train`")
    _add_eval_options(evaluate)
    parser.set_defaults(func=run_nvi)
    return parser


def _add_eval_options(parser):
    parser.add_argument("--eval-particles", type=int, default=100)
    parser.add_argument("--eval-batches", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build(config: dict) -> tuple[NestedPrograms, NestedObjective]:
    """The programs and objective described by a run's ``config.json``."""
    path = GeometricPath(get_target(config["target"]), INIT_SCALES[config["target"]])
    programs = NestedPrograms(path, config["num_levels"], config["schedule"],
                              config["hidden_dim"])
    return programs, NestedObjective(config["objective"], resample=config["resample"],
                                     resampler=config.get("resampler", "systematic"))


def _write_json(path: Path, obj):
    atomic_write_text(json.dumps(obj, indent=2) + "\n", path)


def _start(args) -> tuple[dict, dict | None]:
    """(config, checkpoint to resume from or None) for ``zoo nvi train``."""
    out = args.out
    if not args.resume:
        config = {k: getattr(args, k) for k in TRAIN_KEYS}
        config["iterations"] = config["iterations"] or 2000
        config["num_particles"] = config["num_particles"] or max(1, 288 // args.num_levels)
        return config, None
    if not (out / "checkpoint.pt").exists():
        raise ValueError(f"{out / 'checkpoint.pt'}: no checkpoint to resume from (train first, "
                         "or check --out).")
    config = json.loads((out / "config.json").read_text())
    config["iterations"] = args.iterations or config["iterations"]
    return config, torch.load(out / "checkpoint.pt", weights_only=False)


def train(args) -> dict:
    config, checkpoint = _start(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", config)
    pyro.set_rng_seed(config["seed"])
    programs, objective = build(config)
    optimizer = torch.optim.Adam(programs.parameters(), lr=config["lr"])
    first, elapsed, row = 1, 0.0, {}
    if checkpoint is not None:
        programs.load_state_dict(checkpoint["programs"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        set_rng_state(checkpoint["rng"])
        first, elapsed = checkpoint["iteration"] + 1, checkpoint["seconds"]
        # metrics.jsonl may hold evaluations past the checkpoint if the run was killed
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        row = next((r for r in reversed(rows) if r["iteration"] == checkpoint["iteration"]), {})
        atomic_write_text("".join(json.dumps(r) + "\n" for r in rows
                                  if r["iteration"] <= checkpoint["iteration"]),
                          out / "metrics.jsonl")
    metrics_file = (out / "metrics.jsonl").open("a" if checkpoint is not None else "w")
    quiet = args.quiet or not sys.stderr.isatty()
    start = time.perf_counter() - elapsed
    bar = tqdm(range(first, config["iterations"] + 1), disable=quiet, desc="nvi", unit="it")
    for it in bar:
        optimizer.zero_grad()
        sweep = objective(programs, config["num_particles"], backward=True)
        if not torch.isfinite(sweep.loss):
            raise FloatingPointError(
                f"Non-finite loss at iteration {it}; the last good checkpoint is in {out}. "
                "Lower --lr or use more particles.")
        optimizer.step()
        if it % config["eval_every"] == 0 or it == config["iterations"]:
            row = {"iteration": it, "seconds": round(time.perf_counter() - start, 2),
                   **evaluate_nested(programs, objective, config["eval_particles"],
                                     config["eval_batches"]),
                   "betas": programs.schedule().tolist()}
            atomic_save({"programs": programs.state_dict(), "optimizer": optimizer.state_dict(),
                         "iteration": it, "seconds": time.perf_counter() - start,
                         "rng": rng_state(), "config": config}, out / "checkpoint.pt")
            metrics_file.write(json.dumps(row) + "\n")  # first the checkpoint, then the log
            metrics_file.flush()
            bar.set_postfix(log_z=f"{row['log_z']:.3f}", ess=f"{row['ess_percent']:.0f}%")
    metrics_file.close()
    summary = {**row, "exact_log_z": programs.path.target.log_z,
               "seconds_per_iteration": (time.perf_counter() - start) / config["iterations"]}
    _write_json(out / "summary.json", summary)
    plot_levels(programs, objective, out / "levels.png")
    return summary


def evaluate(args) -> dict:
    config = json.loads((args.run / "config.json").read_text())
    programs, objective = build(config)
    state = torch.load(args.run / "checkpoint.pt", weights_only=False)
    programs.load_state_dict(state["programs"])
    pyro.set_rng_seed(args.seed)
    result = {"iteration": state["iteration"],
              **evaluate_nested(programs, objective, args.eval_particles, args.eval_batches),
              "exact_log_z": programs.path.target.log_z,
              "protocol": f"{args.eval_batches} batches x {args.eval_particles} particles, "
                          f"resampling={'on' if objective.resample else 'off'} as trained"}
    _write_json(args.run / "evaluation.json", result)
    plot_levels(programs, objective, args.run / "levels.png")
    return result


@torch.no_grad()
def plot_levels(programs, objective, path: Path, num_particles: int = 3000):
    """Weighted 2-d histograms of the particles at every level (Figure 4 of [1])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = objective(programs, num_particles, keep_particles=True)
    num = len(sweep.particles)
    fig, axes = plt.subplots(1, num, figsize=(2.2 * num, 2.4), squeeze=False)
    lim = 14 if isinstance(programs.path.target, TARGETS["ring"]) else 8
    betas = programs.schedule()
    for k, (ax, z, log_w) in enumerate(zip(axes[0], sweep.particles, sweep.log_weights)):
        weights = torch.softmax(log_w, 0).numpy()
        ax.hist2d(z[:, 0].numpy(), z[:, 1].numpy(), bins=60, weights=weights,
                  range=[[-lim, lim], [-lim, lim]], cmap="viridis")
        ax.set_title(f"k={k}, β={betas[k].item():.2f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_nvi(args) -> dict:
    """The ``zoo nvi`` handler: dispatch to ``train`` or ``evaluate`` and print JSON."""
    result = train(args) if args.nvi_action == "train" else evaluate(args)
    print(json.dumps(result))
    return result
