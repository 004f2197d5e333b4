r"""VAE against a two-layer DLGM on scikit-learn digits, under several guides, at equal
training time, over several seeds.

What it shows: whether a second stochastic layer (Rezende et al. [1]) buys log-likelihood when
both models get the same wall-clock training budget, and what the guide adds on each: a
Householder flow [2], the paper's diagonal-plus-rank-one recognition model, and the bottom-up
chain :math:`q(z_1 \mid x)\, q(z_2 \mid z_1)` of Burda et al.'s two-layer models [3]
(``chain_normal``; on the VAE's single site it *is* ``diagonal_normal``, so the VAE runs once
and serves as the peer of both). Every (model, guide) pair of a seed is trained with the zoo's
engine (``zoo.train.fit``, Adam) epoch by epoch until its summed training seconds (evaluation
excluded) reach ``--budget``; the pairs take turns epoch by epoch (the one behind in seconds
goes next), so that load from other processes on a shared machine falls on all alike.

``--kl-warmup F`` trains every pair (VAE and DLGM alike) with the KL weight :math:`\beta`
rising linearly from 0 to 1 over the first fraction F of its *seconds* (the engine's
``kl_weight`` schedule, ``LinearWarmup(seconds=...)``, :mod:`zoo.schedules`; Sønderby et al.
[4]), then the plain ELBO; the weight is set step by step from the training seconds spent so
far, so both models warm up over the same wall time. Each pair is then scored on the test split by

- the held-out ELBO (``--eval-particles`` samples per image, ``zoo.evaluation.heldout_elbo``);
- the importance-sampled log-likelihood :math:`\log \frac1K \sum_k p(x, z_k)/q(z_k \mid x)`,
  K = 5,000 guide particles as in [3] (``zoo.infer.importance``), with its ESS;
- the ELBO on a fixed binarization of the *training* images (over- or under-fitting);
- seconds per training epoch;
- active units per layer [3, Sec. 5.2]: whether the DLGM's top layer carries information at all.

Data: ``zoo.data.load("digits", seed=--split-seed)`` (1,797 8x8 images, seeded 80/20 split;
training images binarized afresh per batch, test images once). ``--seeds`` vary the
initialization, minibatches and noise, not the split. One torch thread
(``OMP_NUM_THREADS=1``). The peer is the VAE of the same seed and run; the number reported is
the DLGM's log-likelihood minus the VAE's (nats per image; positive means the DLGM is better),
then its mean and spread over seeds.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_models.py --kl-warmup 0.3 \
        --guides diagonal_normal chain_normal --seeds 0 1 2 --out benchmarks/results/deep_models
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_models.py --quick    # seconds

**References:**

1. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
2. *Improving Variational Auto-Encoders using Householder Flow*, J. M. Tomczak, M. Welling (2016),
   arXiv:1611.09630
3. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
4. *Ladder Variational Autoencoders*, C. K. Sønderby, T. Raiko, L. Maaløe, S. K. Sønderby,
   O. Winther (2016), arXiv:1602.02282
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for _report

import pyro  # noqa: E402
import torch  # noqa: E402
from _report import write_report  # noqa: E402
from pyro import poutine  # noqa: E402

from zoo.data import load  # noqa: E402
from zoo.data.dataset import TensorSplit  # noqa: E402
from zoo.evaluation import heldout_elbo  # noqa: E402
from zoo.infer.importance import log_likelihood  # noqa: E402
from zoo.registry import get_guide, get_model  # noqa: E402
from zoo.schedules import KL_WEIGHT, LinearWarmup  # noqa: E402
from zoo.train import fit  # noqa: E402

MODELS = {
    "vae": dict(latent_dim=20, hidden_dims=(400,)),
    "dlgm": dict(latent_dims=(20, 10), hidden_dims=(400,), transition_dims=(100,)),
}
LABELS = {"vae": "VAE", "dlgm": "DLGM (L=2)"}
GUIDES = {
    "diagonal_normal": dict(hidden_dims=(400,)),
    "chain_normal": dict(hidden_dims=(400,), link_dims=(100,)),
    "householder": dict(hidden_dims=(400,), num_flows=4),
    "low_rank_normal": dict(hidden_dims=(400,), rank=1),
}
# On a model with one latent site this guide is exactly the other: train that pair once.
SAME_ON_ONE_SITE = {"chain_normal": "diagonal_normal"}


def warmup_schedules(args) -> dict:
    r"""The engine's schedules for ``--kl-warmup F``: :math:`\beta = \min(1, t / (F \cdot
    \text{budget}))` after :math:`t` training seconds; none without a warm-up."""
    if args.kl_warmup <= 0:
        return {}
    return {KL_WEIGHT: LinearWarmup(seconds=args.kl_warmup * args.budget)}


def pair_names(args):
    """``(model, guide, peer_guide)`` to train: every model under every guide, except the VAE
    under a guide that equals another one listed (its peer row is that guide's VAE)."""
    names = []
    for guide in args.guides:
        for model in args.models:
            alias = SAME_ON_ONE_SITE.get(guide)
            if model == "vae" and alias in args.guides:
                continue
            names.append((model, guide))
    return names


def train_in_turns(pairs, data, args, seed):
    """Train every ``(model, guide)`` of ``pairs`` with ``fit`` one epoch at a time, always
    advancing the one with the fewest training seconds so far, until each has ``args.budget``
    seconds. Taking turns spreads any load from other processes over all pairs alike. A run
    folder per pair lets every call resume exactly (optimizer and RNG states included)."""
    histories = [[] for _ in pairs]
    spent = [0.0 for _ in pairs]
    with tempfile.TemporaryDirectory() as root:
        while min(spent) < args.budget:
            i = min(range(len(pairs)), key=spent.__getitem__)
            model, guide = pairs[i]
            histories[i] = fit(model, guide, data, epochs=len(histories[i]) + 1,
                               batch_size=args.batch_size, lr=args.lr, seed=seed,
                               objective=args.objective, schedules=warmup_schedules(args),
                               num_particles=args.num_particles,
                               out_dir=os.path.join(root, str(i)), resume=bool(histories[i]),
                               progress=False, device="cpu")
            spent[i] = sum(h["seconds"] for h in histories[i])
    return histories


@torch.no_grad()
def active_units(model, guide, x, num_samples=1000):
    r"""Active units per latent site, ``{"z_2": 0, "z_1": 20}``: units whose posterior mean varies
    across images, :math:`\operatorname{Var}_x \mathbb{E}_q[z_u] > 10^{-2}` (Burda et al. [3,
    Sec. 5.2]). The mean is a Monte Carlo average of ``num_samples`` guide draws (a flow guide's
    mean is not its base ``loc``); its noise variance, about :math:`\sigma^2 / 1000`, stays well
    below the threshold."""
    with pyro.plate("samples", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(x)
    return {
        s.name: int((trace.nodes[s.name]["value"].mean(0).var(0) > 1e-2).sum())
        for s in model.latent_sites()
    }


def evaluate(names, model, guide, history, data, train_fixed, args, seed):
    train_seconds = sum(h["seconds"] for h in history)
    pyro.set_rng_seed(seed)
    elbo = heldout_elbo(model, guide, data.test, num_particles=args.eval_particles)
    train_elbo = heldout_elbo(model, guide, train_fixed, num_particles=args.eval_particles)
    start = time.perf_counter()
    result = log_likelihood(model, guide, data.test, num_particles=args.particles,
                            chunk_size=args.chunk_size, batch_size=args.eval_batch_size)
    summary = result.summary()
    return {
        "model": names[0],
        "guide": names[1],
        "seed": seed,
        "parameters": sum(p.numel() for p in [*model.parameters(), *guide.parameters()]),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / len(history),
        "heldout_elbo": elbo,
        "train_elbo": train_elbo,
        "is_log_likelihood": summary["is_log_likelihood"],
        "is_log_likelihood_stderr": summary["is_log_likelihood_stderr"],
        "ess_mean": summary["ess_mean"],
        "khat_max": summary["khat_max"],
        "is_seconds": time.perf_counter() - start,
        "active_units": active_units(model, guide, data.test.dense()),
    }


def model_config(model_name, args) -> dict:
    """``MODELS[model_name]``, with the VAE's latent size from ``--vae-latent-dim``."""
    if model_name == "vae":
        return {**MODELS["vae"], "latent_dim": args.vae_latent_dim}
    return MODELS[model_name]


def run_seed(seed, data, args):
    """Every pair of :func:`pair_names`, built from ``seed``, trained in turns, then scored."""
    names = pair_names(args)
    pairs = []
    for model_name, guide_name in names:
        pyro.set_rng_seed(seed)
        model = get_model(model_name, input_dim=data.num_features, **model_config(model_name, args))
        pairs.append((model, get_guide(guide_name, model, **GUIDES[guide_name])))
    histories = train_in_turns(pairs, data, args, seed)
    # The training images under one fixed binarization, scored like the test split.
    train_fixed = TensorSplit(data.train.values, binarize="fixed", seed=seed)
    rows = []
    for n, (model, guide), history in zip(names, pairs, histories):
        rows.append(evaluate(n, model, guide, history, data, train_fixed, args, seed))
        print(json.dumps(rows[-1]), flush=True)  # progress: one JSON line per pair
    return rows


def add_differences(rows):
    """Set ``vs_vae``: a DLGM row's log p(x) minus that of the VAE of the same seed under the
    same guide (or the guide it equals on one site)."""
    vae = {(r["seed"], r["guide"]): r["is_log_likelihood"] for r in rows if r["model"] == "vae"}
    for r in rows:
        if r["model"] == "vae":
            continue
        guide = r["guide"] if (r["seed"], r["guide"]) in vae else SAME_ON_ONE_SITE.get(r["guide"])
        if (r["seed"], guide) in vae:
            r["vs_vae"] = r["is_log_likelihood"] - vae[(r["seed"], guide)]
            r["peer_guide"] = guide


def _mean_sd(values, digits=2):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summary_rows(rows):
    """One row per (model, guide): means ± sample standard deviations over seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["guide"]), []).append(r)
    out = []
    for (model, guide), rs in groups.items():
        sites = rs[0]["active_units"]
        units = {k: statistics.mean(r["active_units"][k] for r in rs) for k in sites}
        diffs = [r["vs_vae"] for r in rs if "vs_vae" in r]
        out.append({
            "model": model, "guide": guide, "seeds": [r["seed"] for r in rs],
            "epochs": statistics.mean(r["epochs"] for r in rs),
            "seconds_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in rs),
            "heldout_elbo": [r["heldout_elbo"] for r in rs],
            "train_elbo": [r["train_elbo"] for r in rs],
            "is_log_likelihood": [r["is_log_likelihood"] for r in rs],
            "active_units": units,
            "vs_vae": diffs,
            "wins": sum(d > 0 for d in diffs),
        })
    return out


def objective_label(args) -> str:
    label = args.objective + (f", K={args.num_particles}" if args.num_particles > 1 else "")
    if args.kl_warmup > 0:
        label = f"annealed→trace (KL warm-up {args.kl_warmup:g} of budget)"
    return label


def markdown(rows, summary, args) -> str:
    lines = [
        f"Digits (split seed {args.split_seed}), seeds {args.seeds}, {args.budget:g} s of "
        f"training per pair, objective {objective_label(args)}, batch {args.batch_size}, "
        f"Adam lr {args.lr:g}, 1 CPU thread; log p(x) with K={args.particles}. VAE z "
        f"{args.vae_latent_dim}, DLGM z_1, z_2 = {MODELS['dlgm']['latent_dims']}.",
        "",
        "| model | guide | seed | epochs | s/epoch | train ELBO | held-out ELBO | "
        "log p(x) (IS s.e.) | ESS | active units | vs VAE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = f"{r['vs_vae']:+.2f}" if "vs_vae" in r else "(peer)"
        lines.append(
            f"| {LABELS[r['model']]} | {r['guide']} | {r['seed']} | {r['epochs']} | "
            f"{r['seconds_per_epoch']:.3f} | {r['train_elbo']:.2f} | {r['heldout_elbo']:.2f} | "
            f"{r['is_log_likelihood']:.3f} ({r['is_log_likelihood_stderr']:.3f}) | "
            f"{r['ess_mean']:.0f} | "
            + ", ".join(f"{k} {v}" for k, v in r["active_units"].items()) + f" | {gain} |"
        )
    lines += [
        "",
        "Over seeds (mean ± sd; vs VAE paired by seed, wins = seeds where the DLGM is better):",
        "",
        "| model | guide | epochs | s/epoch | held-out ELBO | log p(x) | active units | "
        "vs VAE (nats) | wins |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        diffs = f"{_mean_sd(s['vs_vae'])} | {s['wins']}/{len(s['vs_vae'])}" if s["vs_vae"] \
            else "(peer) | "
        lines.append(
            f"| {LABELS[s['model']]} | {s['guide']} | {s['epochs']:.0f} | "
            f"{s['seconds_per_epoch']:.3f} | {_mean_sd(s['heldout_elbo'])} | "
            f"{_mean_sd(s['is_log_likelihood'], 3)} | "
            + ", ".join(f"{k} {v:.1f}" for k, v in s["active_units"].items())
            + f" | {diffs} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0,
                        help="training seconds per (model, guide) pair")
    parser.add_argument("--particles", type=int, default=5000, help="K for log p(x)")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--eval-batch-size", type=int, default=60)
    parser.add_argument("--eval-particles", type=int, default=10, help="samples per ELBO")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (initialization, minibatches, noise)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the 80/20 split")
    parser.add_argument("--objective", default="trace",
                        help="training objective by name (trace, meanfield, iwae, ...)")
    parser.add_argument("--num-particles", type=int, default=1,
                        help="particles of the training objective (K of iwae)")
    parser.add_argument("--kl-warmup", type=float, default=0.0,
                        help="fraction of the budget over which the KL weight rises 0 -> 1 "
                             "(needs --objective trace); 0: no warm-up")
    parser.add_argument("--vae-latent-dim", type=int, default=MODELS["vae"]["latent_dim"],
                        help="the VAE's z (20: the DLGM's z_1, as Burda et al. [3] stack a "
                             "layer on a one-layer model; 30: the DLGM's total latent size)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=list(GUIDES))
    parser.add_argument("--out", help="write results.json and results.md to this folder")
    parser.add_argument("--quick", action="store_true",
                        help="2 s per pair and K=200: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.kl_warmup > 0 and args.objective != "trace":
        parser.error("--kl-warmup anneals Trace_ELBO's KL terms; use it with --objective trace")
    if args.quick:
        args.budget, args.particles, args.chunk_size = 2.0, 200, 200
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)  # parameters live in the modules, as in zoo.cli

    data = load("digits", seed=args.split_seed)
    rows = []
    for seed in args.seeds:
        rows += run_seed(seed, data, args)
    add_differences(rows)
    summary = summary_rows(rows)
    report = {
        "benchmark": "deep_models",
        "data": f"scikit-learn digits: {data.meta['split']}",
        "seeds": args.seeds,
        "split_seed": args.split_seed,
        "budget_seconds": args.budget,
        "num_particles": args.particles,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "objective": objective_label(args),
        "objective_particles": args.num_particles,
        "kl_warmup_fraction": args.kl_warmup,
        "models": {k: model_config(k, args) for k in args.models},
        "guides": {k: GUIDES[k] for k in args.guides},
        "hardware": f"{platform.machine()} {platform.processor() or ''} "
                    f"({os.cpu_count()} cores visible), torch {torch.__version__}, "
                    f"{torch.get_num_threads()} thread(s)",
        "rows": rows,
        "summary": summary,
    }
    return write_report(report, markdown(rows, summary, args), args.out)


if __name__ == "__main__":
    main()
