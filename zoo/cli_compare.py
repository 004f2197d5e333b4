r"""``zoo compare``: guides and objectives side by side on one model (or several), with error
bars; or run folders trained elsewhere.

::

    zoo compare vae --guides diagonal_normal householder --elbo trace iwae:5 \
        --seeds 0 1 2 --epochs 200 --lr 3e-3 --out runs/cmp
    zoo compare vae dlgm --guides diagonal_normal chain_normal --budget-seconds 60 \
        --kl-warmup-fraction 0.3 --seeds 0 1 2 --out runs/deep
    zoo compare runs/a runs/b --out runs/ab        # existing run folders (same data split)

Every (model, guide, objective, seed) cell is a run folder under ``--out``; the report is
``report.md``, ``report.json`` and PNG figures there (:mod:`zoo.compare`). Rerun the same
command after an interruption: finished cells are skipped, unfinished ones resumed.

``zoo/cli.py`` wires it in with ``cli_compare.add_parser(subparsers)``; the parser sets
``func``, so ``main`` dispatches to :func:`cmd_compare`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from zoo import runs

#: options that only make sense when the comparison trains its cells
TRAINING_ONLY = ("guides", "elbo", "seeds", "epochs", "budget_seconds", "data", "data_opt",
                 "model_opt", "guide_opt", "batch_size", "lr", "beta1", "beta2", "clip_norm",
                 "kl_warmup", "kl_warmup_fraction", "device", "validate")
DEFAULTS = {"elbo": ["trace"], "seeds": [0], "data": "digits"}


def _is_run(path: str) -> bool:
    return (Path(path) / runs.CONFIG).is_file()


def evaluation_from_args(args):
    """The :class:`~zoo.compare_eval.Evaluation` settings that ``zoo compare``'s flags give."""
    from zoo.compare_eval import Evaluation

    return Evaluation(num_particles=args.num_particles, chunk_size=args.chunk_size,
                      batch_size=args.eval_batch_size, elbo_particles=args.elbo_particles,
                      refine_steps=args.refine,
                      refine_points=args.refine_points, posterior_points=args.posterior_points,
                      posterior_samples=args.posterior_samples,
                      posterior_particles=args.posterior_particles, seed=args.eval_seed)


def train_options_from_args(args) -> dict:
    """The training options that ``zoo compare``'s flags give (only those set)."""
    options = {"batch_size": args.batch_size, "lr": args.lr, "clip_norm": args.clip_norm,
               "kl_warmup": args.kl_warmup, "device": args.device}
    options = {k: v for k, v in options.items() if v is not None}
    if args.validate:
        options["validate"] = True
    if args.beta1 is not None or args.beta2 is not None:
        if args.beta1 is None or args.beta2 is None:
            raise ValueError("give --beta1 and --beta2 together (a comparison does not mix "
                             "them with each model's own betas).")
        options["betas"] = (args.beta1, args.beta2)
    return options


def command_line(args) -> str:
    """The command as typed, canonically (every option that differs from its default)."""
    parser = args.compare_parser
    words = ["zoo", "compare", *args.targets]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "targets"):
            continue
        value = vars(args).get(action.dest)
        if value is None or value is False or value == action.default:
            continue
        flag = action.option_strings[-1]
        if value is True:
            words.append(flag)
        elif isinstance(value, list) and action.nargs in ("+", "*"):
            words += [flag, *map(str, value)]
        elif isinstance(value, list):  # append
            for v in value:
                words += [flag, str(v)]
        else:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return " ".join(shlex.quote(w) for w in words)


def cmd_compare(args):
    """``zoo compare``: train and evaluate a grid of (model, guide, objective, seed) cells, or
    compare run folders already trained, and write the report."""
    from zoo.cli import parse_options
    from zoo.compare import compare, compare_runs
    from zoo.registry import list_models

    command = command_line(args)
    runs_given = [t for t in args.targets if _is_run(t)]
    progress = False if args.quiet else None
    if len(runs_given) == len(args.targets):
        given = [f"--{k.replace('_', '-')}" for k in TRAINING_ONLY
                 if getattr(args, k) not in (None, False, DEFAULTS.get(k))]
        if given:
            raise ValueError(f"{', '.join(given)} train a comparison; `zoo compare RUN ...` "
                             "compares run folders as they are (name models to train).")
        result = compare_runs(args.targets, out=args.out, evaluation=evaluation_from_args(args),
                              progress=progress, command=command)
    else:
        models = list_models()
        unknown = [t for t in args.targets if t not in models]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: neither a run folder (no {runs.CONFIG}) nor "
                             f"a model; models: {', '.join(models)}.")
        if args.out is None:
            raise ValueError("--out DIR is needed: every cell is a run folder under it.")
        if args.epochs is None and args.budget_seconds is None:
            raise ValueError("give the budget of every cell: --epochs N or --budget-seconds S.")
        result = compare(
            args.targets, guides=args.guides, objectives=args.elbo or DEFAULTS["elbo"],
            seeds=args.seeds or DEFAULTS["seeds"], out=args.out, epochs=args.epochs,
            budget_seconds=args.budget_seconds, data=args.data or DEFAULTS["data"],
            data_options=parse_options(args.data_opt),
            model_options=parse_options(args.model_opt),
            guide_options=parse_options(args.guide_opt),
            train_options=train_options_from_args(args),
            kl_warmup_fraction=args.kl_warmup_fraction or 0.0,
            evaluation=evaluation_from_args(args), cell_figures=not args.no_cell_figures,
            progress=progress, command=command)
    print(result.markdown)
    if result.out is not None:
        print(f"\nwrote {result.out / 'report.md'}, report.json and "
              f"{', '.join(result.figures)}", file=sys.stderr)
    return result


def _run(args):
    try:
        return cmd_compare(args)
    except KeyboardInterrupt:
        sys.exit("interrupted: every cell keeps its last finished epoch; rerun the same "
                 "command to continue.")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``compare`` to the ``zoo`` command's subparsers."""
    p = subparsers.add_parser(
        "compare", help="guides and objectives side by side, trained alike, with error bars",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="+", metavar="MODEL|RUN",
                   help="model name(s) to train a comparison of, or run folders to compare")
    p.add_argument("--out", help="comparison folder: cells, report.md, report.json, figures")
    g = p.add_argument_group("the cells (when naming models)")
    g.add_argument("--guides", nargs="+", metavar="GUIDE",
                   help="guide families (default: the model's default guide); the first one is "
                        "the reference of the paired differences")
    g.add_argument("--elbo", nargs="+", metavar="NAME[:K]",
                   help="objectives, NAME:K for K particles (e.g. trace iwae:5; default trace)")
    g.add_argument("--seeds", nargs="+", type=int, metavar="S", help="training seeds (default 0)")
    g.add_argument("--epochs", type=int, help="epochs per cell (with --budget-seconds: a cap)")
    g.add_argument("--budget-seconds", type=float, metavar="S",
                   help="training seconds per cell (evaluation excluded), the cells in turns")
    g.add_argument("--data", help="dataset name or file (default: digits)")
    g.add_argument("--data-opt", action="append", metavar="KEY=VALUE")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="model option; goes to every model that takes it (repeatable)")
    g.add_argument("--guide-opt", action="append", metavar="KEY=VALUE",
                   help="guide option; goes to every guide that takes it (repeatable)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--beta1", type=float)
    g.add_argument("--beta2", type=float)
    g.add_argument("--clip-norm", type=float)
    g.add_argument("--kl-warmup", type=float, metavar="EPOCHS",
                   help="KL warm-up over this many epochs (as zoo train)")
    g.add_argument("--kl-warmup-fraction", type=float, metavar="F",
                   help="KL warm-up over the first fraction F of each cell's budget (epochs, "
                        "or seconds under --budget-seconds)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--validate", action="store_true", help="Pyro's checks on while training")
    e = p.add_argument_group("scoring (every cell alike)")
    e.add_argument("--num-particles", type=int, default=1000,
                   help="K of the importance-sampled log p(x) (default 1000; 0: none)")
    e.add_argument("--chunk-size", type=int, default=500)
    e.add_argument("--eval-batch-size", type=int, default=50)
    e.add_argument("--elbo-particles", type=int, default=10,
                   help="samples per point of the held-out ELBO (default 10)")
    e.add_argument("--refine", type=int, metavar="STEPS",
                   help="steps refining held-out posteriors for the amortization gap (default "
                        "100 for LDA with the dirichlet guide, 0 for other topic models, 200 "
                        "for other models with a Gaussian-family guide; 0: none)")
    e.add_argument("--refine-points", type=int, default=200,
                   help="held-out points refined, models other than topic models (default 200)")
    e.add_argument("--posterior-points", type=int, default=3,
                   help="held-out points whose posterior is drawn (default 3; 0: none)")
    e.add_argument("--posterior-samples", type=int, default=500)
    e.add_argument("--posterior-particles", type=int, default=1000)
    e.add_argument("--eval-seed", type=int, default=0)
    e.add_argument("--no-cell-figures", action="store_true",
                   help="no figures in the cells' own folders (zoo train's: samples, "
                        "reconstructions or topics; a few seconds per cell)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or lines")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(func=_run, compare_parser=p)
    return p
