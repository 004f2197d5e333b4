r"""``zoo nvi train | evaluate``: train and evaluate a nested-VI sampler on an annealing target.

Training runs through the engine (:func:`zoo.train.fit_nested`), so a run folder is the
engine's: ``config.json``, ``checkpoint.pt`` (written atomically at every evaluation, with every
RNG state), ``metrics.jsonl`` (one JSON line per evaluation: iteration, :math:`\log\hat Z`, ESS
in percent, the schedule), ``summary.json`` and ``levels.png``, the weighted samples at every
level (Figure 4 of [1]). ``--resume`` continues a run from its last checkpoint exactly as if it
had not stopped, with the settings of its ``config.json``: only :data:`RESUME_FLAGS` may be
given beside it (``--iterations`` a larger total, ``--lr`` an explicit change, both recorded);
any other option that differs is refused naming it, as is training into a folder that holds a
run without ``--resume`` or ``--overwrite``. This module is the command's parser and the few
lines that hand its options to the engine.

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
from pathlib import Path

import pyro

from zoo import __version__, options, plots, runs
from zoo.infer.nested import DIVERGENCES, evaluate_nested
from zoo.infer.nested_programs import SCHEDULES
from zoo.infer.resampling import RESAMPLERS
from zoo.models.targets import TARGETS
from zoo.options import add_option
from zoo.train import TrainingInterrupted, fit_nested

#: a run's settings and their defaults (``num_particles``: ``288 // num_levels``, the paper's)
DEFAULTS = {"target": "ring", "num_levels": 4, "num_particles": None, "objective": "nvi-rkl",
            "resample": False, "resampler": "systematic", "schedule": "linear",
            "iterations": 2000, "lr": 1e-3, "hidden_dim": 50, "eval_every": 500,
            "eval_particles": 100, "eval_batches": 100, "seed": 0}
TRAIN_KEYS = tuple(DEFAULTS)
#: what ``--resume`` accepts beside the run's config.json
RESUME_FLAGS = ("--iterations", "--lr", "--device", "--quiet")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``nvi`` with its ``train`` and ``evaluate`` actions to ``subparsers``."""
    parser = subparsers.add_parser("nvi", help="nested variational inference on annealing targets")
    actions = parser.add_subparsers(dest="nvi_action", required=True)
    d = DEFAULTS
    train = actions.add_parser("train", help="train a nested-VI sampler and write a run folder")
    train.add_argument("--target", choices=sorted(TARGETS), help=f"default {d['target']}")
    add_option(train, "--num-levels", type=int, check=options.at_least(2),
               help=f"K, counting the initial N(0, s^2) (default {d['num_levels']})")
    add_option(train, "--num-particles", type=int, check=options.at_least(1),
               help="training particles (default 288 // K, the paper's budget)")
    train.add_argument("--objective", choices=DIVERGENCES, help=f"default {d['objective']}")
    train.add_argument("--resample", action=argparse.BooleanOptionalAction, default=None,
                       help="resample between levels (NVIR; default off)")
    train.add_argument("--resampler", choices=RESAMPLERS, help=f"default {d['resampler']}")
    train.add_argument("--schedule", choices=SCHEDULES,
                       help=f"fixed linear beta, or learned monotone beta (NVI*; default "
                            f"{d['schedule']})")
    add_option(train, "--iterations", type=int, check=options.at_least(1),
               help=f"total (default {d['iterations']}); with --resume a larger total")
    add_option(train, "--lr", type=float, check=options.positive,
               help=f"default {d['lr']:g}; with --resume an explicit, recorded change")
    add_option(train, "--hidden-dim", type=int, check=options.at_least(1),
               help=f"default {d['hidden_dim']}")
    add_option(train, "--eval-every", type=int, check=options.at_least(1),
               help=f"iterations between evaluations and checkpoints (default "
                    f"{d['eval_every']})")
    add_option(train, "--device", default="auto", check=options.device,
               help="auto, cpu, cuda or cuda:N")
    _add_eval_options(train, defaults=False)
    options.add_run_folder_options(train, RESUME_FLAGS, "replace the run that --out holds",
                                   type=Path)
    evaluate = actions.add_parser("evaluate", help="recompute log Z-hat and ESS from a run")
    evaluate.add_argument("run", type=Path, help="run folder written by `zoo nvi train`")
    _add_eval_options(evaluate, defaults=True)
    evaluate.add_argument("--out", type=Path,
                          help="write the evaluation here instead of RUN/evaluation.json")
    parser.set_defaults(func=run_nvi)
    return parser


def _add_eval_options(parser, defaults: bool):
    d = DEFAULTS
    add_option(parser, "--eval-particles", type=int, check=options.at_least(1),
               default=d["eval_particles"] if defaults else None,
               help=f"default {d['eval_particles']}")
    add_option(parser, "--eval-batches", type=int, check=options.at_least(1),
               default=d["eval_batches"] if defaults else None,
               help=f"default {d['eval_batches']}")
    add_option(parser, "--seed", type=int, check=options.seed,
               default=d["seed"] if defaults else None, help=f"default {d['seed']}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def given(args) -> dict:
    """The run settings typed on the command line (``None``: not given)."""
    return {key: vars(args)[key] for key in TRAIN_KEYS if vars(args)[key] is not None}


def train_config(args) -> dict:
    """The run's ``config.json``: the options typed over the defaults, or on ``--resume`` the
    stored ones with only :data:`RESUME_FLAGS` changing them (anything else that differs is
    refused naming it)."""
    if not args.resume:
        if runs.holds_run(args.out) and not args.overwrite:
            raise ValueError(f"--out {args.out} already holds a run: continue it with "
                             f"`zoo nvi train --resume --out {args.out}`, or replace it with "
                             "--overwrite.")
        config = {**DEFAULTS, **given(args)}
        config["num_particles"] = config["num_particles"] or max(1, 288 // config["num_levels"])
        return config
    if args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "give one of them.")
    if not (args.out / runs.CHECKPOINT).exists():
        raise ValueError(f"{args.out / runs.CHECKPOINT}: no checkpoint to resume from (train "
                         "first, or check --out).")
    config = check_config(runs.read_config(args.out), args.out)
    for key, value in given(args).items():
        if key not in ("iterations", "lr") and value != config[key]:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"{flag} {json.dumps(value)} differs from the run's {json.dumps(config[key])} "
                f"({args.out / runs.CONFIG}): a resumed run keeps its settings, and only "
                f"{', '.join(RESUME_FLAGS)} may be given with --resume.")
    if args.iterations is not None and args.iterations < config["iterations"]:
        raise ValueError(f"--iterations {args.iterations} is below the run's total of "
                         f"{config['iterations']}: --resume extends a run.")
    changes = {key: [config[key], vars(args)[key]] for key in ("iterations", "lr")
               if vars(args)[key] is not None and vars(args)[key] != config[key]}
    config.update({key: new for key, (_, new) in changes.items()})
    config["resumes"] = [*config.get("resumes", []), {"zoo": __version__, **changes}]
    return config


def check_config(config: dict, out) -> dict:
    """A ``zoo nvi`` run's config.json: unknown keys refused by name, missing ones too (a key
    added later would have its documented default here)."""
    known = (*TRAIN_KEYS, "versions", "resumes")
    unknown = [key for key in config if key not in known]
    missing = [key for key in TRAIN_KEYS if key not in config and key != "resampler"]
    if unknown or missing:
        what = f"unknown key {unknown[0]!r}" if unknown else f"no {missing[0]!r}"
        raise ValueError(f"{Path(out) / runs.CONFIG}: {what}; a `zoo nvi` run's config holds "
                         f"{', '.join(TRAIN_KEYS)}.")
    return {"resampler": "systematic", **config}  # runs before the option resampled so


def train(args) -> dict:
    """``zoo nvi train``: train a nested-VI sampler on a target density into a run folder
    (``--resume`` continues one)."""
    options.check_arguments(args)
    config = train_config(args)
    runs.check_writable(args.out)
    if args.overwrite:
        runs.clear_run(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    config.setdefault("versions", runs.versions())
    runs.write_json(config, args.out / runs.CONFIG)
    runs.remove_temporary(args.out)
    pyro.set_rng_seed(config["seed"])  # the kernels' initial weights too are fixed by the seed
    programs, objective = runs.build_nested(config)
    try:
        history = fit_nested(programs, objective, num_particles=config["num_particles"],
                             iterations=config["iterations"], eval_every=config["eval_every"],
                             eval_particles=config["eval_particles"],
                             eval_batches=config["eval_batches"], lr=config["lr"],
                             seed=config["seed"], device=args.device, out_dir=args.out,
                             resume=args.resume, progress=False if args.quiet else None,
                             train_config=config)
    except TrainingInterrupted as exc:
        print(f"stopped at iteration {exc.epoch * config['eval_every']}; resume with "
              f"`zoo nvi train --resume --out {args.out}`", file=sys.stderr)
        raise SystemExit(130) from None
    summary = {**history[-1], "exact_log_z": programs.path.target.log_z,
               "seconds_per_iteration": sum(h["seconds"] for h in history) / config["iterations"]}
    runs.write_summary(args.out, summary)
    plots.plot_nested_levels(programs, objective, path=args.out / "levels.png")
    return summary


def evaluate(args) -> dict:
    """``zoo nvi evaluate RUN``: estimate log Z-hat and the ESS of a trained nested-VI sampler,
    print them and write ``evaluation.json`` (or ``--out``)."""
    options.check_arguments(args)
    target = args.out or args.run / "evaluation.json"
    if args.out is not None:
        runs.check_writable(Path(target).parent)
    programs, objective, config, ckpt = runs.load_nested_run(args.run)
    pyro.set_rng_seed(args.seed)
    result = {"iteration": ckpt["history"][-1]["iteration"],
              **evaluate_nested(programs, objective, args.eval_particles, args.eval_batches),
              "exact_log_z": programs.path.target.log_z,
              "protocol": f"{args.eval_batches} batches x {args.eval_particles} particles, "
                          f"resampling={'on' if objective.resample else 'off'} as trained"}
    try:
        runs.write_json(result, target)
        if args.out is None:
            plots.plot_nested_levels(programs, objective, path=args.run / "levels.png")
    except OSError as exc:
        print(json.dumps(result))
        sys.exit(f"error: could not write {exc.filename or target} ({exc.strerror or exc}); "
                 "the results are printed above. Pass --out FILE to write them elsewhere.")
    return result


def run_nvi(args) -> dict:
    """The ``zoo nvi`` handler: dispatch to ``train`` or ``evaluate`` and print JSON."""
    result = train(args) if args.nvi_action == "train" else evaluate(args)
    print(json.dumps(result))
    return result
