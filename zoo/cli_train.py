r"""``zoo train``: train a model and guide into a run folder, or continue one with ``--resume``.

::

    zoo train vae --guide householder --elbo meanfield --epochs 20 --out runs/x
    zoo train --resume --out runs/x --epochs 40        # the same run, to 40 epochs in all
    zoo train --resume --out runs/x --lr 1e-4          # an explicit, recorded change of lr

Everything is checked before any work: every flag's range (:mod:`zoo.options`), every
``--model-opt`` / ``--guide-opt`` / ``--data-opt`` key and type against the constructor or loader
it goes to, the run folder (a folder that already holds a run is refused unless ``--resume`` or
``--overwrite`` says what to do with it; a place the process cannot write is refused), the device,
the model's and guide's constructors, and whether the model can score the data.

**Resume** reads everything from the run's ``config.json``: the model, guide, data and every
training setting. Beside it, only what extends the run may be given: ``--epochs`` (a larger
total), ``--device``, ``--threads``, ``--quiet``, and ``--lr`` (an explicit change, recorded in
``config.json`` with the epoch it took effect at, as is every resume); any other option that
differs from the recorded one is refused naming it. A run folder whose process died before its
first checkpoint resumes from the start.

**Divergence**: the engine stops on a non-finite loss, gradient norm, parameter or buffer; this
command also hands it a per-epoch check of the training and held-out ELBOs against the untrained
model's (:class:`~zoo.divergence.DivergenceGuard`), so a run whose loss explodes to a finite 1e32
stops too, before the epoch's checkpoint replaces the last good one. Either way it prints one
line.
Ctrl-C prints ``stopped at epoch N; resume with ...``.

``zoo/cli.py`` wires it in with ``cli_train.add_parser(subparsers)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pyro

from zoo import __version__, options, runs
from zoo.data.registry import find_loader
from zoo.divergence import DivergenceGuard
from zoo.infer import list_objectives
from zoo.infer.objectives import OBJECTIVES, get_objective
from zoo.options import add_option
from zoo.registry import find_guide, find_model, list_models
from zoo.train import TrainConfig, TrainingDiverged, TrainingInterrupted, fit, resolve_device

#: the flags ``--resume`` accepts beside the run's config.json
RESUME_FLAGS = ("--epochs", "--lr", "--device", "--threads", "--quiet")


@dataclass
class Plan:
    """What a ``zoo train`` command will do, decided (and checked) before any work."""

    out: Path
    model: str
    guide: str | None
    model_config: dict
    guide_options: dict
    data: dict  # runs.data_spec
    train: TrainConfig
    config: dict | None = None  # the run's config.json when resuming
    resume_from: int | None = None  # the checkpoint's epoch, None: train from the start


# ------------------------------------------------------------------------------- command
def cmd_train(args):
    """``zoo train MODEL``: train a model and guide into a run folder (``--resume`` continues one
    exactly)."""
    options.check_arguments(args)
    out = Path(args.out)
    plan = resumed_plan(args, out) if args.resume else new_plan(args, out)
    runs.check_writable(out)
    try:
        resolve_device(plan.train.device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None
    model_cls = find_model(plan.model)
    try:
        dataset = model_cls.prepare_data(runs.load_data(plan.data, out if args.resume else None))
    except ValueError as exc:  # a loader's refusal of an option: say it came from --data-opt
        named = [key for key in plan.data.get("options", {}) if key in str(exc)]
        raise ValueError(f"--data-opt {named[0]}: {exc}" if named and not args.resume
                         else str(exc)) from None
    if not args.resume:
        reserved = model_cls.data_config(dataset)
        for key in plan.model_config:
            if key in reserved:
                raise ValueError(f"--model-opt {key}: set from the data ({key}="
                                 f"{reserved[key]} for {dataset.name}); leave it out.")
    pyro.set_rng_seed(plan.train.seed)  # the initial weights too are fixed by the seed
    model, guide = build_pair(plan, dataset, args.resume)
    model.check_data(dataset)
    from zoo import cli  # the summary, metrics and figures every command shares

    guard = DivergenceGuard(model, guide, dataset)
    if plan.resume_from is not None:  # refuse a damaged or foreign checkpoint before writing
        ckpt = runs.load_checkpoint(out / runs.CHECKPOINT, model, guide)
        missing = [key for key in runs.RESUMABLE if key not in ckpt]
        if missing:
            raise ValueError(f"{out / runs.CHECKPOINT} was written by an older zoo (it has no "
                             f"{', '.join(missing)}): it can be evaluated, not resumed; train "
                             "a new run.")
    # ---- every check passed: from here on the run folder changes
    if args.resume:
        record_resume(args, plan)
    else:
        if args.overwrite:
            runs.clear_run(out)
        runs.write_config(out, model, guide, plan.data, plan.train)
    runs.remove_temporary(out)
    print(f"{'resuming' if plan.resume_from is not None else 'training'} {plan.model} with guide "
          f"{guide.registry_name}, objective {plan.train.objective}, on {dataset}",
          file=sys.stderr)
    try:
        history = fit(model, guide, dataset, plan.train, out_dir=out,
                      resume=plan.resume_from is not None,
                      progress=False if args.quiet else None,
                      extra_metrics=cli.per_epoch_metrics, check=guard)
    except TrainingDiverged as exc:
        sys.exit(f"error: {exc} `zoo train --resume --out {out} --lr SMALLER` continues from "
                 "the checkpoint.")
    except TrainingInterrupted as exc:
        print(f"stopped at epoch {exc.epoch}; resume with `zoo train --resume --out {out}`",
              file=sys.stderr)
        raise SystemExit(130) from None
    except KeyboardInterrupt:  # before the engine's loop (setup): nothing new was saved
        epoch = saved_epoch(out)
        print(f"stopped at epoch {epoch}; resume with `zoo train --resume --out {out}`",
              file=sys.stderr)
        raise SystemExit(130) from None
    summary = cli.final_summary(model, guide, dataset, history, plan.train)
    runs.write_summary(out, summary)
    cli.write_figures(out, model, guide, dataset, history)
    print(json.dumps(summary, indent=2))
    return summary


def saved_epoch(out: Path) -> int:
    """The epoch the run's checkpoint holds (0 when it has none)."""
    try:
        return int(runs.load_checkpoint(out / runs.CHECKPOINT)["epoch"])
    except ValueError:
        return 0


def build_pair(plan: Plan, dataset, resume: bool):
    """Model and guide; a constructor's refusal names the flag the option came from."""
    if resume:
        return runs.build(plan.model, plan.guide, dataset, plan.model_config, plan.guide_options)
    try:
        model = runs.build_model(plan.model, dataset, plan.model_config)
    except ValueError as exc:
        raise ValueError(f"--model-opt: {exc}" if plan.model_config else str(exc)) from None
    try:
        guide = runs.build_guide(model, plan.guide, plan.guide_options)
    except ValueError as exc:
        raise ValueError(f"--guide-opt: {exc}" if plan.guide_options else str(exc)) from None
    return model, guide


# ----------------------------------------------------------------------------- a new run
def new_plan(args, out: Path) -> Plan:
    """Check a new run's options against the model, guide and loader they go to."""
    if args.model is None:
        raise ValueError("name the model to train (`zoo list` shows them), or continue a run "
                         "with `zoo train --resume --out RUN`.")
    if runs.holds_run(out) and not args.overwrite:
        raise ValueError(f"--out {out} already holds a run ({describe_run(out)}): continue it "
                         f"with `zoo train --resume --out {out}`, or replace it with --overwrite.")
    model_cls = find_model(args.model)
    model_config = options.parse_pairs(args.model_opt, "--model-opt")
    options.check_keywords(model_cls, model_config, "--model-opt", f"model '{args.model}'")
    guide_name = args.guide or model_cls.default_guide
    guide_options = options.parse_pairs(args.guide_opt, "--guide-opt")
    options.check_keywords(find_guide(guide_name), guide_options, "--guide-opt",
                           f"guide '{guide_name}'")
    data = args.data or "digits"
    data_options = options.parse_pairs(args.data_opt, "--data-opt")
    loader, _ = find_loader(data)
    options.check_keywords(loader, data_options, "--data-opt", f"the loader of {data!r}")
    return Plan(out, args.model, args.guide, model_config, guide_options,
                runs.data_spec(data, data_options), train_config_from_args(model_cls, args))


def train_config_from_args(model_cls, args) -> TrainConfig:
    """Defaults, then the model's published settings (e.g. AVITM's Adam beta1 = 0.99), then
    what the user typed."""
    config = {**asdict(TrainConfig()), **model_cls.default_train_config}
    given = {
        "objective": args.elbo, "num_particles": args.num_particles, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "clip_norm": args.clip_norm,
        "seed": args.seed, "device": args.device,
        # Pyro's checks cost 10-20 % of a step; our loaders have validated the data already
        "validate": bool(args.validate), "kl_warmup": args.kl_warmup,
    }
    config.update({k: v for k, v in given.items() if v is not None})
    if args.beta1 is not None or args.beta2 is not None:
        beta1, beta2 = config["betas"]
        config["betas"] = (args.beta1 if args.beta1 is not None else beta1,
                           args.beta2 if args.beta2 is not None else beta2)
    try:
        OBJECTIVES.get(config["objective"])
    except ValueError as exc:
        raise ValueError(f"--elbo: {exc}") from None
    config["objective_options"] = objective_options(config["objective"], args.objective_opt)
    try:
        return TrainConfig(**config).check()
    except ValueError as exc:  # TrainConfig names its field: say which flag sets it
        field = next((f for f in FLAGS if str(exc).startswith(f)), None)
        raise ValueError(f"{FLAGS[field]}: {exc}" if field else str(exc)) from None


def objective_options(name: str, pairs) -> dict:
    """``--objective-opt KEY=VALUE`` pairs (e.g. ``jit=true``) as the options of objective
    ``name``, refused by name when its factory does not take them (built once here, before any
    work, so that a wrong key or value fails now, not after the data are loaded)."""
    given = options.parse_pairs(pairs, "--objective-opt")
    if given:
        try:
            get_objective(name, **given)
        except (TypeError, ValueError) as exc:
            pairs = ", ".join(f"{k}={v!r}" for k, v in given.items())
            raise ValueError(f"--objective-opt: objective '{name}' refused {pairs} "
                             f"({exc}).") from None
    return given


#: the TrainConfig field each flag sets
FLAGS = {"objective": "--elbo", "num_particles": "--num-particles", "epochs": "--epochs",
         "batch_size": "--batch-size", "lr": "--lr", "betas": "--beta1/--beta2",
         "clip_norm": "--clip-norm", "seed": "--seed", "device": "--device",
         "kl_warmup": "--kl-warmup"}


def describe_run(out: Path) -> str:
    """``config.json, checkpoint.pt at epoch 3 of 10`` (what a folder's run holds)."""
    parts = [name for name in (runs.CONFIG, runs.CHECKPOINT) if (out / name).exists()]
    try:
        total = runs.read_config(out)["train"]["epochs"]
        done = runs.load_checkpoint(out / runs.CHECKPOINT)["epoch"]
        return f"{', '.join(parts)} at epoch {done} of {total}"
    except (ValueError, KeyError, TypeError):
        return ", ".join(parts)


# ---------------------------------------------------------------------------- --resume
def resumed_plan(args, out: Path) -> Plan:
    """The run as its config.json describes it, with only ``RESUME_FLAGS`` changing it."""
    if args.overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "give one of them.")
    if not (out / runs.CONFIG).exists():
        raise ValueError(f"--resume: {out} holds no run to resume (no {runs.CONFIG}); start "
                         f"one with `zoo train MODEL --out {out}`.")
    config = runs.check_config(runs.read_config(out), out)
    train = train_config_from_run(config, out)
    recorded = {
        "model": config["model"], "--guide": config["guide"],
        "--elbo": train["objective"], "--num-particles": train["num_particles"],
        "--batch-size": train["batch_size"], "--beta1": train["betas"][0],
        "--beta2": train["betas"][1], "--clip-norm": train["clip_norm"],
        "--kl-warmup": train["kl_warmup"], "--seed": train["seed"],
        "--validate": train["validate"],
    }
    given = {
        "model": args.model, "--guide": args.guide, "--elbo": args.elbo,
        "--num-particles": args.num_particles, "--batch-size": args.batch_size,
        "--beta1": args.beta1, "--beta2": args.beta2, "--clip-norm": args.clip_norm,
        "--kl-warmup": args.kl_warmup, "--seed": args.seed,
        "--validate": True if args.validate else None,
    }
    for flag, value in given.items():
        if value is not None and value != recorded[flag] and not (
                flag == "--validate" and recorded[flag] is None):
            refuse_change(flag, value, recorded[flag], out)
    if args.data is not None:
        if runs.data_name(args.data) != config["data"]["name"]:
            refuse_change("--data", args.data, config["data"]["name"], out)
    for flag, entry in (("--model-opt", config["model_config"]),
                        ("--guide-opt", config["guide_options"]),
                        ("--objective-opt", train.get("objective_options", {})),
                        ("--data-opt", config["data"].get("options", {}))):
        pairs = options.parse_pairs(vars(args)[flag[2:].replace("-", "_")], flag)
        for key, value in pairs.items():
            if key not in entry or runs.jsonable(value) != runs.jsonable(entry[key]):
                refuse_change(f"{flag} {key}", value, entry.get(key, "(not set)"), out)
    if args.epochs is not None and args.epochs < train["epochs"]:
        raise ValueError(f"--epochs {args.epochs} is below the run's total of {train['epochs']} "
                         f"({out / runs.CONFIG}): --resume extends a run; give a larger total, or "
                         "leave --epochs out to finish it.")
    train.update(epochs=args.epochs or train["epochs"], lr=args.lr or train["lr"],
                 device=args.device or train["device"])
    resume_from = None
    if (out / runs.CHECKPOINT).exists():
        resume_from = int(runs.load_checkpoint(out / runs.CHECKPOINT)["epoch"])
    try:
        train_config = TrainConfig(**train).check()
    except ValueError as exc:
        raise ValueError(f"{out / runs.CONFIG}: train: {exc}") from None
    return Plan(out, config["model"], config["guide"], config["model_config"],
                config["guide_options"], config["data"], train_config, config, resume_from)


def refuse_change(flag: str, value, recorded, out: Path):
    """Raise the ``ValueError`` of a resumed run given a setting (``flag``) that differs from the
    one it recorded."""
    shown = value if flag == "model" else json.dumps(runs.jsonable(value))
    raise ValueError(
        f"{flag} {shown} differs from the run's {json.dumps(runs.jsonable(recorded))} "
        f"({out / runs.CONFIG}): a resumed run keeps its settings, and only "
        f"{', '.join(RESUME_FLAGS)} may be given with --resume. Leave {flag.split()[0]} out, or "
        f"train a new run into another --out.")


def train_config_from_run(config: dict, out: Path) -> dict:
    """The ``train`` entry as :class:`TrainConfig` fields: an unknown key is refused by name; a
    missing one takes TrainConfig's default, which is what runs trained before it existed did
    (evaluation every epoch, no time budget, ...)."""
    names = [f.name for f in fields(TrainConfig)]
    unknown = [key for key in config["train"] if key not in names]
    if unknown:
        raise ValueError(f"{out / runs.CONFIG}: train has unknown key {unknown[0]!r}; its keys "
                         f"are TrainConfig's: {', '.join(names)}.")
    train = {**asdict(TrainConfig()), **config["train"]}
    train["betas"] = tuple(train["betas"]) if isinstance(train["betas"], list) else train["betas"]
    return train


def record_resume(args, plan: Plan) -> None:
    """Write into config.json what this resume changed (the new total, a new lr, the device),
    so that config.json describes the run that happened."""
    config, train = plan.config, plan.config["train"]
    entry = {"at_epoch": plan.resume_from or 0, "zoo": __version__}
    if plan.train.epochs != train["epochs"]:
        entry["epochs"] = [train["epochs"], plan.train.epochs]
    if plan.train.lr != train["lr"]:
        entry["lr"] = [train["lr"], plan.train.lr]
    if args.device is not None:
        entry["device"] = args.device
    train.update(epochs=plan.train.epochs, lr=plan.train.lr)
    config["resumes"] = [*config.get("resumes", []), entry]
    runs.write_json(config, plan.out / runs.CONFIG)


# ---------------------------------------------------------------------------------- parser
def add_parser(subparsers):
    """Add ``train`` to the ``zoo`` command's subparsers; its help shows the defaults."""
    d = TrainConfig()
    own = "".join(f"\n  {name}: " + ", ".join(f"{k} {_shown(v)}" for k, v in
                                                find_model(name).default_train_config.items())
                  for name in list_models() if find_model(name).default_train_config)
    t = subparsers.add_parser(
        "train", help="train a model and guide; writes a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"models with training defaults of their own (a flag given overrides them):{own}"
               "\n\n`zoo options MODEL` lists a model's and its guides' options.")
    t.add_argument("model", nargs="?", help="the model (`zoo list`); taken from the run with "
                                            "--resume")
    t.add_argument("--guide", help="guide family (default: the model's default guide)")
    t.add_argument("--elbo", help=f"objective: {', '.join(list_objectives())} "
                                  f"(default {d.objective})")
    add_option(t, "--num-particles", type=int, check=options.at_least(1),
               help=f"particles per data point (default {d.num_particles})")
    t.add_argument("--data", help="dataset name or file (default: digits)")
    t.add_argument("--data-opt", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. binarize=false (repeatable)")
    t.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="model option, e.g. latent_dim=10 (repeatable; `zoo options MODEL`)")
    t.add_argument("--guide-opt", action="append", metavar="KEY=VALUE",
                   help="guide option, e.g. num_flows=8 (repeatable)")
    t.add_argument("--objective-opt", action="append", metavar="KEY=VALUE",
                   help="objective option, e.g. jit=true (meanfield, iwae: trace the loss once "
                        "and replay it; repeatable)")
    add_option(t, "--epochs", type=int, check=options.at_least(1),
               help=f"total epochs (default {d.epochs}); with --resume a larger total")
    add_option(t, "--batch-size", type=int, check=options.at_least(1),
               help=f"default {d.batch_size}")
    add_option(t, "--lr", type=float, check=options.positive,
               help=f"Adam's learning rate (default {d.lr:g}); with --resume an explicit, "
                    "recorded change")
    add_option(t, "--beta1", type=float, check=options.below_one,
               help=f"Adam's beta1 (default {d.betas[0]})")
    add_option(t, "--beta2", type=float, check=options.below_one,
               help=f"Adam's beta2 (default {d.betas[1]})")
    add_option(t, "--clip-norm", type=float, check=options.positive,
               help="clip the gradient's global norm to this (default: no clipping)")
    add_option(t, "--kl-warmup", type=float, metavar="EPOCHS", check=options.nonnegative,
               help="KL warm-up: weight the latents' terms by beta rising from 0 to 1 over "
                    "this many epochs (Sønderby et al. 2016; default 0, none)")
    add_option(t, "--seed", type=int, check=options.seed, help=f"default {d.seed}")
    add_option(t, "--device", check=options.device,
               help=f"auto, cpu, cuda or cuda:N (default {d.device})")
    options.add_run_folder_options(t, RESUME_FLAGS,
                                   "replace the run that --out holds (its files; others stay)")
    t.add_argument("--validate", action="store_true",
                   help="keep Pyro's argument and shape checks on while training (slower; for "
                        "debugging a new model or guide)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    add_option(t, "--threads", type=int, check=options.at_least(1),
               help="torch CPU threads (1 is fastest when other processes share the cores)")
    t.set_defaults(func=cmd_train)
    return t


def _shown(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)
