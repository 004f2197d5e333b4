"""Command line: ``zoo list | train | evaluate | sample | topics | data | nvi``.

::

    zoo list
    zoo train vae --guide householder --elbo meanfield --data digits --epochs 20 --out runs/x
    zoo evaluate runs/x
    zoo sample runs/x
    zoo data download mnist --out data/mnist
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pyro
import torch
from pyro import poutine

from zoo import cli_data, cli_nvi, cli_topics, runs
from zoo import data as zoo_data
from zoo.evaluation import heldout_elbo
from zoo.infer import list_objectives
from zoo.registry import find_model, list_guides, list_models
from zoo.train import TrainConfig, TrainingDiverged, fit


def parse_options(pairs) -> dict:
    """``["hidden_dims=[200,200]", "likelihood=gaussian"]`` -> dict, values parsed as JSON when
    they parse (numbers, lists, booleans), else kept as strings."""
    options = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"Option {pair!r} is not of the form key=value.")
        key, value = pair.split("=", 1)
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


# --------------------------------------------------------------------------------------- list
def cmd_list(args):
    rows = []
    for name in list_models():
        model = find_model(name)()
        module_doc = sys.modules[type(model).__module__].__doc__ or ""
        summary = " ".join(module_doc.strip().split("\n\n")[0].split())  # first paragraph
        rows.append((name, model.default_guide, list_guides(model), summary))
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


# -------------------------------------------------------------------------------------- train
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
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in config.items() if k in names})


def final_summary(model, guide, dataset, history, config: TrainConfig) -> dict:
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
    ``refine_steps`` held-out refinement steps (``None``: :func:`default_refine_steps`)."""
    if dataset.kind == "text" and model.topic_model:
        from zoo.topics import topics_summary

        if refine_steps is None:
            refine_steps = default_refine_steps(model, guide)
        return topics_summary(model, guide, dataset, refine_steps=refine_steps)
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
    vocab = dataset.meta.get("vocab")
    if dataset.kind == "text" and model.topic_model and vocab is not None:
        from zoo.metrics import top_words
        from zoo.topics import topic_word

        beta = topic_word(model, guide)
        plots.plot_topic_top_words(beta, vocab, path=run_dir / "topics.png")
        corr = model.topic_correlations()
        if corr is not None:  # CTM: the learned topic correlations
            labels = [" ".join(words) for words in top_words(beta, vocab, 3)]
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
    x = dataset.test.batch(torch.arange(min(num, len(dataset.test))))
    posterior = poutine.trace(guide).get_trace(x)
    recon = model.observation_mean(
        poutine.trace(poutine.replay(model, trace=posterior)).get_trace(x))
    plots.reconstruction_grid(x, recon, shape, path=Path(run_dir) / "reconstructions.png")
    return True


def cmd_train(args):
    model_cls = find_model(args.model)
    data_spec = {"name": args.data, "options": parse_options(args.data_opt)}
    dataset = model_cls.prepare_data(runs.load_data(data_spec))
    config = train_config_from_args(model_cls, args)
    pyro.set_rng_seed(config.seed)  # the initial weights too are fixed by --seed
    model, guide = runs.build(args.model, args.guide, dataset, parse_options(args.model_opt),
                              parse_options(args.guide_opt))
    model.check_data(dataset)
    out = Path(args.out)
    if not args.resume:
        runs.write_config(out, model, guide, data_spec, config)
    print(f"training {args.model} with guide {guide.registry_name}, objective "
          f"{config.objective}, on {dataset}", file=sys.stderr)
    try:
        history = fit(model, guide, dataset, config, out_dir=out, resume=args.resume,
                      progress=False if args.quiet else None, extra_metrics=per_epoch_metrics)
    except TrainingDiverged as e:
        sys.exit(f"error: {e}")
    summary = final_summary(model, guide, dataset, history, config)
    runs.write_summary(out, summary)
    write_figures(out, model, guide, dataset, history)
    print(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------------- evaluate
def cmd_evaluate(args):
    if args.refine is not None and args.refine < 0:
        sys.exit(f"error: --refine must be a number of steps >= 0, got {args.refine}")
    model, guide, dataset, config, ckpt = runs.load_run(args.run, device=args.device)
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
    runs.write_summary(args.run, summary)
    print(json.dumps(summary, indent=2))
    return summary


def cmd_sample(args):
    model, guide, dataset, config, _ = runs.load_run(args.run)
    if dataset.kind != "image":
        sys.exit(f"error: `zoo sample` draws images; {args.run} holds a {dataset.kind} model. "
                 "For topic models use `zoo topics RUN`.")
    if not write_samples(args.run, model, guide, dataset, num=args.num, seed=args.seed):
        sys.exit(f"error: model '{model.registry_name}' draws no images to show.")
    print(f"wrote {Path(args.run) / 'samples.png'} and {Path(args.run) / 'reconstructions.png'}")


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="models, the guides that fit each, objectives, datasets")
    ls.add_argument("--markdown", action="store_true", help="the model table as markdown")

    t = sub.add_parser("train", help="train a model and guide; writes a run folder")
    t.add_argument("model")
    t.add_argument("--guide", help="guide family (default: the model's default guide)")
    t.add_argument("--elbo", help="objective: " + ", ".join(list_objectives()))
    t.add_argument("--num-particles", type=int)
    t.add_argument("--data", default="digits", help="dataset name or file (default: digits)")
    t.add_argument("--data-opt", action="append", metavar="KEY=VALUE",
                   help="loader option, e.g. binarize=false (repeatable)")
    t.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="model option, e.g. latent_dim=10 (repeatable)")
    t.add_argument("--guide-opt", action="append", metavar="KEY=VALUE",
                   help="guide option, e.g. num_flows=8 (repeatable)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--beta1", type=float)
    t.add_argument("--beta2", type=float)
    t.add_argument("--clip-norm", type=float)
    t.add_argument("--kl-warmup", type=float, metavar="EPOCHS",
                   help="KL warm-up: weight the latents' terms by beta rising from 0 to 1 over "
                        "this many epochs (Sønderby et al. 2016)")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", choices=["auto", "cpu", "cuda"])
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    t.add_argument("--validate", action="store_true",
                   help="keep Pyro's argument and shape checks on while training (slower; for "
                        "debugging a new model or guide)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--threads", type=int,
                   help="torch CPU threads (1 is fastest when other processes share the cores)")

    e = sub.add_parser("evaluate", help="recompute held-out metrics from a run's checkpoint")
    e.add_argument("run")
    e.add_argument("--num-particles", type=int, default=0,
                   help="add the importance-sampled log-likelihood with this many particles")
    e.add_argument("--chunk-size", type=int, default=500)
    e.add_argument("--batch-size", type=int, default=100)
    e.add_argument("--elbo-particles", type=int, default=1)
    e.add_argument("--refine", type=int, metavar="STEPS",
                   help="topic models: also report the held-out perplexity with each document's "
                        "posterior refined STEPS steps at fixed topics (semi-amortized; default "
                        "100 for LDA with the dirichlet guide, else 0)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, help="torch CPU threads")

    s = sub.add_parser("sample", help="PNG grids of samples and reconstructions")
    s.add_argument("run")
    s.add_argument("--num", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)

    cli_data.add_parser(sub)
    cli_topics.add_parser(sub)
    cli_nvi.add_parser(sub)
    return parser


COMMANDS = {"list": cmd_list, "train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample}


def main(argv=None):
    pyro.settings.set(module_local_params=True)
    args = build_parser().parse_args(argv)
    func = args.func if "func" in args else COMMANDS[args.command]
    if "threads" in args and args.threads:
        torch.set_num_threads(args.threads)
    try:
        func(args)
    except ValueError as e:  # bad input: say what and where, no traceback
        sys.exit(f"error: {e}")
    return 0


if __name__ == "__main__":
    main()
