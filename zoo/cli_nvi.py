r"""``zoo nvi train | evaluate``: train and evaluate a nested-VI sampler on an annealing target.

Training runs through the engine (:func:`zoo.train.fit_nested`), so a run folder is the
engine's: ``config.json``, ``checkpoint.pt`` (written atomically at every evaluation, with every
RNG state), ``metrics.jsonl`` (one JSON line per evaluation: iteration, :math:`\log\hat Z`, ESS
in percent, the schedule), ``summary.json`` and ``levels.png``, the weighted samples at every
level (Figure 4 of [1]). ``--resume`` continues a run from its last checkpoint exactly as if it
had not stopped (``--iterations`` may raise its total). This module is the command's parser and
the few lines that hand its options to the engine.

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
from pathlib import Path

import pyro

from zoo import plots, runs
from zoo.infer.nested import DIVERGENCES, evaluate_nested
from zoo.infer.nested_programs import SCHEDULES
from zoo.infer.resampling import RESAMPLERS
from zoo.models.targets import TARGETS
from zoo.train import fit_nested

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
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
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


def train_config(args) -> dict:
    """The run's ``config.json``: the options typed, or on ``--resume`` the stored ones with a
    larger ``--iterations`` total."""
    if not args.resume:
        config = {k: vars(args)[k] for k in TRAIN_KEYS}
        config["iterations"] = config["iterations"] or 2000
        config["num_particles"] = config["num_particles"] or max(1, 288 // args.num_levels)
        return config
    if not (args.out / runs.CHECKPOINT).exists():
        raise ValueError(f"{args.out / runs.CHECKPOINT}: no checkpoint to resume from (train "
                         "first, or check --out).")
    config = runs.read_config(args.out)
    config["iterations"] = args.iterations or config["iterations"]
    return config


def train(args) -> dict:
    config = train_config(args)
    args.out.mkdir(parents=True, exist_ok=True)
    runs.write_json(config, args.out / runs.CONFIG)
    pyro.set_rng_seed(config["seed"])  # the kernels' initial weights too are fixed by the seed
    programs, objective = runs.build_nested(config)
    history = fit_nested(programs, objective, num_particles=config["num_particles"],
                         iterations=config["iterations"], eval_every=config["eval_every"],
                         eval_particles=config["eval_particles"],
                         eval_batches=config["eval_batches"], lr=config["lr"],
                         seed=config["seed"], device=args.device, out_dir=args.out,
                         resume=args.resume, progress=False if args.quiet else None,
                         train_config=config)
    summary = {**history[-1], "exact_log_z": programs.path.target.log_z,
               "seconds_per_iteration": sum(h["seconds"] for h in history) / config["iterations"]}
    runs.write_summary(args.out, summary)
    plots.plot_nested_levels(programs, objective, path=args.out / "levels.png")
    return summary


def evaluate(args) -> dict:
    programs, objective, config, ckpt = runs.load_nested_run(args.run)
    pyro.set_rng_seed(args.seed)
    result = {"iteration": ckpt["history"][-1]["iteration"],
              **evaluate_nested(programs, objective, args.eval_particles, args.eval_batches),
              "exact_log_z": programs.path.target.log_z,
              "protocol": f"{args.eval_batches} batches x {args.eval_particles} particles, "
                          f"resampling={'on' if objective.resample else 'off'} as trained"}
    runs.write_json(result, args.run / "evaluation.json")
    plots.plot_nested_levels(programs, objective, path=args.run / "levels.png")
    return result


def run_nvi(args) -> dict:
    """The ``zoo nvi`` handler: dispatch to ``train`` or ``evaluate`` and print JSON."""
    result = train(args) if args.nvi_action == "train" else evaluate(args)
    print(json.dumps(result))
    return result
