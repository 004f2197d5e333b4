r"""VAE against a two-layer DLGM on scikit-learn digits, each with three guides, at equal
training time.

What it shows: whether a second stochastic layer (Rezende et al. [1]) buys log-likelihood when
both models get the same wall-clock training budget, and what richer guides (a Householder
flow [2], the paper's diagonal-plus-rank-one recognition model) add on each. Every (model, guide)
pair is trained with the zoo's engine (``zoo.train.fit``, ``Trace_ELBO``, Adam) epoch by epoch
until its summed training seconds (evaluation excluded) reach ``--budget``; the VAE and the DLGM
under one guide take turns epoch by epoch (the one behind in seconds goes next), so that load
from other processes on a shared machine falls on both alike. Each is then scored on the test
split by

- the held-out ELBO (``--eval-particles`` samples per image, ``zoo.evaluation.heldout_elbo``);
- the importance-sampled log-likelihood :math:`\log \frac1K \sum_k p(x, z_k)/q(z_k \mid x)`,
  K = 5,000 guide particles as in [3] (``zoo.infer.importance``), with its ESS;
- seconds per training epoch;
- active units per layer [3, Sec. 5.2]: whether the DLGM's top layer carries information at all.

Data: ``zoo.data.load("digits")`` (1,797 8x8 images, seeded 80/20 split; training images
binarized afresh per batch, test images once). One torch thread (``OMP_NUM_THREADS=1``). The
peer is the VAE in the same run; the ratio reported is the DLGM's log-likelihood minus the VAE's
under the same guide (nats per image; positive means the DLGM is better).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_models.py            # 60 s per pair
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deep_models.py --quick    # seconds

**References:**

1. *Stochastic Backpropagation and Approximate Inference in Deep Generative Models*,
   D. J. Rezende, S. Mohamed, D. Wierstra (2014), arXiv:1401.4082
2. *Improving Variational Auto-Encoders using Householder Flow*, J. M. Tomczak, M. Welling (2016),
   arXiv:1611.09630
3. *Importance Weighted Autoencoders*, Y. Burda, R. Grosse, R. Salakhutdinov (2015),
   arXiv:1509.00519
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyro  # noqa: E402
import torch  # noqa: E402
from pyro import poutine  # noqa: E402

from zoo.data import load  # noqa: E402
from zoo.evaluation import heldout_elbo  # noqa: E402
from zoo.infer.importance import log_likelihood  # noqa: E402
from zoo.registry import get_guide, get_model  # noqa: E402
from zoo.train import fit  # noqa: E402

MODELS = {
    "vae": dict(latent_dim=20, hidden_dims=(400,)),
    "dlgm": dict(latent_dims=(20, 10), hidden_dims=(400,), transition_dims=(100,)),
}
LABELS = {"vae": "VAE", "dlgm": "DLGM (L=2)"}
GUIDES = {
    "diagonal_normal": dict(hidden_dims=(400,)),
    "householder": dict(hidden_dims=(400,), num_flows=4),
    "low_rank_normal": dict(hidden_dims=(400,), rank=1),
}


def train_in_turns(pairs, data, budget, args):
    """Train every ``(model, guide)`` of ``pairs`` with ``fit`` one epoch at a time, always
    advancing the one with the fewest training seconds so far, until each has ``budget``
    seconds. Taking turns spreads any load from other processes over all pairs alike. A run
    folder per pair lets every call resume exactly (optimizer and RNG states included)."""
    histories = [[] for _ in pairs]
    spent = [0.0 for _ in pairs]
    with tempfile.TemporaryDirectory() as root:
        while min(spent) < budget:
            i = min(range(len(pairs)), key=spent.__getitem__)
            model, guide = pairs[i]
            histories[i] = fit(model, guide, data, epochs=len(histories[i]) + 1,
                               batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               objective=args.objective, num_particles=args.num_particles,
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


def evaluate(model_name, guide_name, model, guide, history, data, args):
    train_seconds = sum(h["seconds"] for h in history)
    pyro.set_rng_seed(args.seed)
    elbo = heldout_elbo(model, guide, data.test, num_particles=args.eval_particles)
    start = time.perf_counter()
    result = log_likelihood(model, guide, data.test, num_particles=args.particles,
                            chunk_size=args.chunk_size, batch_size=args.eval_batch_size)
    summary = result.summary()
    return {
        "model": model_name,
        "guide": guide_name,
        "parameters": sum(p.numel() for p in [*model.parameters(), *guide.parameters()]),
        "epochs": len(history),
        "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / len(history),
        "heldout_elbo": elbo,
        "is_log_likelihood": summary["is_log_likelihood"],
        "is_log_likelihood_stderr": summary["is_log_likelihood_stderr"],
        "ess_mean": summary["ess_mean"],
        "khat_max": summary["khat_max"],
        "is_seconds": time.perf_counter() - start,
        "active_units": active_units(model, guide, data.test.dense()),
    }


def run_guide(guide_name, data, args):
    """Every model of ``args.models`` with guide ``guide_name``, trained in turns."""
    pairs = []
    for model_name in args.models:
        pyro.set_rng_seed(args.seed)
        model = get_model(model_name, input_dim=data.num_features, **MODELS[model_name])
        pairs.append((model, get_guide(guide_name, model, **GUIDES[guide_name])))
    histories = train_in_turns(pairs, data, args.budget, args)
    return [
        evaluate(model_name, guide_name, model, guide, history, data, args)
        for model_name, (model, guide), history in zip(args.models, pairs, histories)
    ]


def markdown(rows, args) -> str:
    vae_ll = {r["guide"]: r["is_log_likelihood"] for r in rows if r["model"] == "vae"}
    objective = args.objective + (f", K={args.num_particles}" if args.num_particles > 1 else "")
    lines = [
        f"Digits, seed {args.seed}, {args.budget:g} s of training per pair, objective "
        f"{objective}, batch {args.batch_size}, Adam lr {args.lr:g}, 1 CPU thread.",
        "",
        f"| model | guide | epochs in {args.budget:g} s | s/epoch | held-out ELBO | "
        f"log p(x), K={args.particles} (IS s.e.) | ESS | active units | vs VAE, same guide |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["is_log_likelihood"] - vae_ll[r["guide"]] if r["guide"] in vae_ll else None
        lines.append(
            f"| {LABELS[r['model']]} | {r['guide']} | {r['epochs']} | "
            f"{r['seconds_per_epoch']:.3f} | {r['heldout_elbo']:.2f} | "
            f"{r['is_log_likelihood']:.3f} ({r['is_log_likelihood_stderr']:.3f}) | "
            f"{r['ess_mean']:.0f} | "
            + ", ".join(f"{k} {v}" for k, v in r["active_units"].items()) + " | "
            + ("(peer)" if r["model"] == "vae" else f"{gain:+.2f} nats")
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=60.0,
                        help="training seconds per (model, guide) pair")
    parser.add_argument("--particles", type=int, default=5000, help="K for log p(x)")
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--eval-batch-size", type=int, default=60)
    parser.add_argument("--eval-particles", type=int, default=10, help="samples per ELBO")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objective", default="trace",
                        help="training objective by name (trace, meanfield, iwae, ...)")
    parser.add_argument("--num-particles", type=int, default=1,
                        help="particles of the training objective (K of iwae)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--guides", nargs="+", default=list(GUIDES), choices=list(GUIDES))
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--quick", action="store_true",
                        help="2 s per pair and K=200: checks the script, measures nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.particles, args.chunk_size = 2.0, 200, 200
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)  # parameters live in the modules, as in zoo.cli

    data = load("digits", seed=args.seed)
    rows = []
    for guide_name in args.guides:
        for row in run_guide(guide_name, data, args):
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {
        "benchmark": "deep_models",
        "data": f"scikit-learn digits: {data.meta['split']}",
        "seed": args.seed,
        "budget_seconds": args.budget,
        "num_particles": args.particles,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "objective": args.objective,
        "objective_particles": args.num_particles,
        "models": {k: MODELS[k] for k in args.models},
        "guides": {k: GUIDES[k] for k in args.guides},
        "hardware": f"{platform.machine()} {platform.processor() or ''} "
                    f"({os.cpu_count()} cores visible), torch {torch.__version__}, "
                    f"{torch.get_num_threads()} thread(s)",
        "rows": rows,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=list)
    print(json.dumps(report, default=list))
    print(markdown(rows, args))
    return report


if __name__ == "__main__":
    main()
