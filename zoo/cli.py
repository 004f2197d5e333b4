"""Command line: ``zoo list | options | train | evaluate | sample | topics | data | nvi``.

::

    zoo list
    zoo options vae                  # a model's and its guides' options, types and defaults
    zoo train vae --guide householder --elbo meanfield --data digits --epochs 20 --out runs/x
    zoo train --resume --out runs/x --epochs 40
    zoo evaluate runs/x
    zoo sample runs/x
    zoo data download mnist --out data/mnist

A mistake of the user's (a bad option, a file that does not parse, a run folder that is not
one, a diverged run, Ctrl-C) ends in one line saying what and where, never a traceback: the
commands raise ``ValueError`` for bad input, and :func:`main` prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import pyro
import torch
from pyro import poutine

from zoo import cli_compare, cli_data, cli_nvi, cli_topics, cli_train, options, runs
from zoo import data as zoo_data
from zoo.data import registry as data_registry
from zoo.evaluation import heldout_elbo
from zoo.infer import list_objectives
from zoo.models.base import like_module
from zoo.options import add_option
from zoo.registry import (
    default_guide_options,
    find_guide,
    find_model,
    list_guides,
    list_models,
)
from zoo.train import TrainConfig, TrainingDiverged, resolve_device

parse_options = options.parse_pairs  # the name earlier code imported


# --------------------------------------------------------------------------- list, options
def model_summary(name: str) -> str:
    """The first paragraph of a model's module docstring, on one line."""
    module_doc = sys.modules[find_model(name).__module__].__doc__ or ""
    return " ".join(module_doc.strip().split("\n\n")[0].split())


def cmd_list(args):
    """``zoo list``: every model with its default guide and the guides that fit (``--markdown``: the
    README's table); ``zoo list MODEL`` is ``zoo options MODEL``."""
    if args.model:  # `zoo list MODEL` is `zoo options MODEL`
        return print_options(args.model)
    rows = []
    for name in list_models():
        model = find_model(name)()
        rows.append((name, model.default_guide, list_guides(model), model_summary(name)))
    if args.markdown:  # the README's table is made by `zoo list --markdown`
        print("| model | what it is | default guide | guides that fit |\n|---|---|---|---|")
        for name, default, guides, summary in rows:
            print(f"| `{name}` | {summary} | `{default}` | {', '.join(guides)} |")
        return
    print(f"{'model':<12} {'default guide':<16} guides that fit")
    for name, default, guides, _ in rows:
        print(f"{name:<12} {default:<16} {', '.join(guides)}")
    print(f"\nobjectives (--elbo): {', '.join(list_objectives())}")
    print(f"datasets (--data):   {', '.join(zoo_data.list_datasets())}, "
          f"or a file: {', '.join(f for f in zoo_data.list_formats() if f != 'dir')}, "
          f"or an MNIST IDX folder")
    print("\n`zoo options MODEL` lists a model's and its guides' options, types and defaults.")


def cmd_options(args):
    """``zoo options MODEL``: the model's options and those of the guides that fit it."""
    print_options(args.model)


def print_options(name: str) -> None:
    """A model's options, those of each guide that fits it (with the model's defaults for
    them), its training defaults and the data loaders' options: what ``--model-opt``,
    ``--guide-opt``, ``--data-opt`` and the training flags take."""
    cls = find_model(name)
    model = cls()
    data_keys = set(cls.data_config(_EmptyData()))

    def table(rows, indent="  "):
        width = max((len(r[0]) for r in rows), default=0)
        kinds = max((len(r[1]) for r in rows), default=0)
        for key, kind, default in rows:
            default = "set from the data" if key in data_keys else default
            print(f"{indent}{key:<{width}}  {kind:<{kinds}}  {default}")

    print(f"{name}: {model_summary(name)}\n\nmodel options (--model-opt KEY=VALUE):")
    table([r for r in options.option_rows(cls)])
    print(f"\nguides that fit (--guide NAME, default {cls.default_guide}); their options "
          "(--guide-opt KEY=VALUE), with this model's defaults:")
    for guide in list_guides(model):
        print(f"  {guide}")
        table(options.option_rows(find_guide(guide), default_guide_options(model, guide)),
              indent="    ")
    train = {**vars(TrainConfig()), **cls.default_train_config}
    flags = {"objective": "--elbo", "num_particles": "--num-particles", "epochs": "--epochs",
             "batch_size": "--batch-size", "lr": "--lr", "clip_norm": "--clip-norm",
             "seed": "--seed", "device": "--device", "kl_warmup": "--kl-warmup"}
    shown = [f"{flag} {'none' if train[key] is None else train[key]}"
             for key, flag in flags.items()]
    shown[5:5] = [f"--beta1 {train['betas'][0]}", f"--beta2 {train['betas'][1]}"]
    print(f"\ntraining defaults for {name} (zoo train): {', '.join(shown)}"
          + (f"; held-out metrics every {train['eval_every']} epochs"
             if train["eval_every"] != 1 else ""))
    print("\ndata options (--data-opt KEY=VALUE), by dataset or file type:")
    sources: dict = {}  # loader -> the names and suffixes it reads
    for name, loader in [*data_registry.DATASETS.items(), *data_registry.FORMATS.items()]:
        sources.setdefault(loader, []).append("an MNIST folder" if name == "dir" else name)
    for loader, names in sources.items():
        pairs = " ".join(f"{key}={default}" for key, _, default in options.option_rows(loader))
        print(f"  {', '.join(names)}: {pairs}")


class _EmptyData:
    """Stands in for a dataset to ask a model class which options the data sets."""

    num_features = 0


# ---------------------------------------------------------------------- summaries, figures
def final_summary(model, guide, dataset, history, config: TrainConfig) -> dict:
    """The ``summary.json`` of a finished training run: epochs, the last held-out ELBO, seconds per
    epoch and the model's extra metrics."""
    summary = {
        "epochs": len(history),
        "heldout_elbo": history[-1]["heldout_elbo"] if history else None,
        "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history)
                              if history else None),
    }
    summary.update(extra_metrics(model, guide, dataset, refine_steps=None))
    return summary


def default_refine_steps(model, guide) -> int:
    """Held-out refinement reported by default: LDA with the ``dirichlet`` guide is trained to
    be refined (its topics learn from E-step posteriors, see ``guides/dirichlet.py``), so its
    summary carries the refined perplexity the benchmark reports (100 E-steps); other pairs 0."""
    from zoo.topics import has_closed_form_refinement

    return 100 if has_closed_form_refinement(model, guide) else 0


def extra_metrics(model, guide, dataset, refine_steps: int | None = 0) -> dict:
    """Metrics beyond the ELBO that the field reports for this kind of data; for topic models,
    ``refine_steps`` held-out refinement steps (``None``: :func:`default_refine_steps`), and
    the top 10 words (all of them in a vocabulary of fewer)."""
    from zoo.topics import scores_topics, topics_summary

    if scores_topics(model, dataset):
        if refine_steps is None:
            refine_steps = default_refine_steps(model, guide)
        return topics_summary(model, guide, dataset, refine_steps=refine_steps,
                              num_words=min(10, dataset.num_features))
    return {}


def per_epoch_metrics(model, guide, dataset) -> dict:
    """The scalar metrics worth a line in ``metrics.jsonl`` every epoch (no word lists)."""
    return {k: v for k, v in extra_metrics(model, guide, dataset).items()
            if isinstance(v, (int, float)) and k != "num_topics"}


def write_figures(run_dir, model, guide, dataset, history):
    """The run's PNG figures: training curves; samples and reconstructions for models that draw
    images; topics (and CTM's correlations) for topic models on text with a vocabulary."""
    from zoo import plots

    run_dir = Path(run_dir)
    if history:
        plots.plot_training_curves(history, path=run_dir / "training_curves.png")
    if dataset.kind == "image":
        write_samples(run_dir, model, guide, dataset, num=50)
    from zoo.topics import scores_topics

    vocab = dataset.meta.get("vocab")
    if scores_topics(model, dataset) and vocab is not None:
        from zoo.metrics import top_words
        from zoo.topics import topic_word

        beta = topic_word(model, guide)
        plots.plot_topic_top_words(beta, vocab, n_words=min(10, len(vocab)),
                                   path=run_dir / "topics.png")
        corr = model.topic_correlations()
        if corr is not None:  # CTM: the learned topic correlations
            labels = [" ".join(words) for words in top_words(beta, vocab, min(3, len(vocab)))]
            plots.plot_topic_correlations(corr, labels, path=run_dir / "topic_correlations.png")
    plots.plt.close("all")


@torch.no_grad()
def write_samples(run_dir, model, guide, dataset, num=50, seed=0) -> bool:
    """Prior samples (means of p(x|z)) and reconstructions of held-out images; ``False`` (and
    nothing written) when the model draws no images."""
    from zoo import plots

    pyro.set_rng_seed(seed)
    shape = dataset.meta.get("image_shape", (1, dataset.num_features))
    prior = model.observation_mean(poutine.trace(model).get_trace(None, batch_size=num))
    if prior is None:
        return False
    plots.image_grid(prior, shape, title="samples from the model",
                     path=Path(run_dir) / "samples.png")
    x = like_module(dataset.test.batch(torch.arange(min(num, len(dataset.test)))), model)
    posterior = poutine.trace(guide).get_trace(x)
    recon = model.observation_mean(
        poutine.trace(poutine.replay(model, trace=posterior)).get_trace(x))
    plots.reconstruction_grid(x, recon, shape, path=Path(run_dir) / "reconstructions.png")
    return True


# ----------------------------------------------------------------------------- evaluate
def summary_path(args) -> Path:
    """Where ``zoo evaluate`` writes: ``--out`` (a folder gets ``summary.json`` in it), else the
    run folder's ``summary.json``."""
    if args.out is None:
        return Path(args.run) / runs.SUMMARY
    out = Path(args.out)
    return out / runs.SUMMARY if out.is_dir() else out


def cmd_evaluate(args):
    """``zoo evaluate RUN``: recompute the held-out metrics from the run's checkpoint
    (importance-sampled log p(x) with ``--num-particles``), print them and write them to
    ``summary.json`` (or ``--out``)."""
    options.check_arguments(args)
    target = summary_path(args)
    if args.out is not None:  # a place the user chose: refuse it before the work
        runs.check_writable(target.parent)
    try:
        resolve_device(args.device)
    except ValueError as exc:
        raise ValueError(f"--device: {exc}") from None
    model, guide, dataset, config, ckpt = runs.load_run(args.run, device=args.device)
    splits_gap = bool(args.refine) and not (dataset.kind == "text" and model.topic_model)
    if splits_gap:  # refused before any work when there is nothing to refine
        from zoo.infer.amortization import amortization_gap, check_refinable

        check_refinable(model, guide)
    pyro.set_rng_seed(args.seed)
    summary = {
        "epochs": ckpt["epoch"],
        "heldout_elbo": heldout_elbo(model, guide, dataset.test,
                                     num_particles=args.elbo_particles),
    }
    summary.update(extra_metrics(model, guide, dataset, refine_steps=args.refine))
    if args.num_particles:
        from zoo.infer.importance import importance_summary

        summary.update(importance_summary(model, guide, dataset.test, args.num_particles,
                                          chunk_size=args.chunk_size, batch_size=args.batch_size))
    if splits_gap:
        summary.update(amortization_gap(model, guide, dataset.test, steps=args.refine,
                                        log_likelihood=summary.get("is_log_likelihood")))
        del summary["pointwise_amortization_gap"]
    print(json.dumps(runs.jsonable(summary), indent=2), flush=True)  # the results come first
    try:
        runs.write_json(summary, target)
    except OSError as exc:
        sys.exit(f"error: could not write {target} ({exc.strerror or exc}); the results are "
                 "printed above. Pass --out FILE to write them elsewhere.")
    return summary


def cmd_sample(args):
    """``zoo sample RUN``: write ``samples.png`` and ``reconstructions.png`` for a run of an image
    model."""
    options.check_arguments(args)
    model, guide, dataset, config, _ = runs.load_run(args.run)
    runs.check_writable(args.run, flag="RUN")
    if dataset.kind != "image":
        sys.exit(f"error: `zoo sample` draws images; {args.run} holds a {dataset.kind} model. "
                 "For topic models use `zoo topics RUN`.")
    if not write_samples(args.run, model, guide, dataset, num=args.num, seed=args.seed):
        sys.exit(f"error: model '{model.registry_name}' draws no images to show.")
    print(f"wrote {Path(args.run) / 'samples.png'} and {Path(args.run) / 'reconstructions.png'}")


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``zoo`` command's argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="models, the guides that fit each, objectives, datasets")
    ls.add_argument("model", nargs="?", help="one model: its options (as `zoo options MODEL`)")
    ls.add_argument("--markdown", action="store_true", help="the model table as markdown")
    ls.set_defaults(func=cmd_list)
    op = sub.add_parser("options", help="a model's and its guides' options, types, defaults")
    op.add_argument("model")
    op.set_defaults(func=cmd_options)

    cli_train.add_parser(sub)

    e = sub.add_parser("evaluate", help="recompute held-out metrics from a run's checkpoint")
    e.add_argument("run")
    add_option(e, "--num-particles", type=int, default=0, check=options.at_least(0),
               help="add the importance-sampled log-likelihood with this many particles "
                    "(default 0: none)")
    add_option(e, "--chunk-size", type=int, default=500, check=options.at_least(1),
               help="particles per chunk of the importance sampler (default 500)")
    add_option(e, "--batch-size", type=int, default=100, check=options.at_least(1),
               help="data points per batch of the importance sampler (default 100)")
    add_option(e, "--elbo-particles", type=int, default=1, check=options.at_least(1),
               help="particles of the held-out ELBO estimate (default 1)")
    add_option(e, "--refine", type=int, metavar="STEPS", check=options.at_least(0),
               help="refine each held-out posterior STEPS steps at the fixed model: topic "
                    "models report the refined perplexity (default 100 for LDA with the "
                    "dirichlet guide, else 0), other models the amortization gap (and the "
                    "approximation gap with --num-particles; default 0)")
    add_option(e, "--seed", type=int, default=0, check=options.seed, help="default 0")
    add_option(e, "--device", default="cpu", check=options.device,
               help="auto, cpu, cuda or cuda:N (default cpu)")
    add_option(e, "--threads", type=int, check=options.at_least(1), help="torch CPU threads")
    e.add_argument("--out", help="write the summary here instead of RUN/summary.json (a folder: "
                                 "FOLDER/summary.json)")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("sample", help="PNG grids of samples and reconstructions")
    s.add_argument("run")
    add_option(s, "--num", type=int, default=50, check=options.at_least(1),
               help="images per grid (default 50)")
    add_option(s, "--seed", type=int, default=0, check=options.seed, help="default 0")
    s.set_defaults(func=cmd_sample)

    cli_data.add_parser(sub)
    cli_topics.add_parser(sub)
    cli_nvi.add_parser(sub)
    cli_compare.add_parser(sub)
    return parser


def _one_line(message, category, filename, lineno, file=None, line=None):
    """A warning as the user reads it: one line, without the source location."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None):
    """The ``zoo`` console script: parse ``argv`` and run the subcommand."""
    pyro.settings.set(module_local_params=True)
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        # a changed data file is worth a line, not a stack of source locations
        warnings.simplefilter("always", runs.DataChangedWarning)
        warnings.showwarning = _one_line
        try:
            options.check_arguments(args)
            if vars(args).get("threads"):
                torch.set_num_threads(args.threads)
            args.func(args)
        except (ValueError, TrainingDiverged) as e:  # bad input: say what and where
            sys.exit(f"error: {e}")
        except OSError as e:  # the file system refused: one line, which file and why
            where = f" {e.filename}" if e.filename else ""
            sys.exit(f"error: could not use{where}: {e.strerror or e}")
        except KeyboardInterrupt:
            print("stopped (Ctrl-C)", file=sys.stderr)
            raise SystemExit(130) from None
    return 0


if __name__ == "__main__":
    main()
