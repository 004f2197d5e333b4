"""Benchmark: training throughput of the zoo's engine against a hand-written PyTorch loop.

Both train the same VAE (784-400-20 MLPs, softplus, Bernoulli likelihood, diagonal Gaussian
encoder) on the same 784-dimensional binary images with batch 128 and the same loss (negative
ELBO with the KL term analytic: the engine with ``--elbo meanfield``). Rounds alternate between
the two in one process, and we report the median images per second of each and the median of the
per-round ratios, so that load from other processes hits both alike. Rates are taken on two
clocks: wall time, and the process's CPU time, which other processes on shared cores cannot
inflate (with one thread, CPU time is the time the work took on the core it had); the target is
read on CPU time when the cores are shared.

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_throughput.py`` (``--quick`` for a smoke run).
Target: engine / plain PyTorch >= 0.9 (Pyro's default SVI loop measured 0.5-0.7 here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import pyro
import torch
from torch import nn
from torch.nn import functional as F

from zoo.data import Dataset, TensorSplit
from zoo.registry import get_guide, get_model
from zoo.train import fit

INPUT, HIDDEN, LATENT, BATCH = 784, 400, 20, 128


def synthetic_images(n: int, seed: int = 0) -> torch.Tensor:
    """Blurry random prototypes as pixel probabilities (real MNIST is not needed for timing)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(10, INPUT, generator=g).round() * 0.9 + 0.05
    return prototypes[torch.randint(0, 10, (n,), generator=g)]


class PlainVAE(nn.Module):
    """The same networks as ``get_model("vae")`` + ``get_guide("diagonal_normal")``."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(INPUT, HIDDEN), nn.Softplus())
        self.loc, self.raw_scale = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
        self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, INPUT))

    def loss(self, x, num_data):
        h = self.enc(x)
        loc, scale = self.loc(h), F.softplus(self.raw_scale(h)) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        log_lik = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1).sum(-1) - scale.log().sum(-1)
        return -(log_lik - kl).sum() * (num_data / len(x)) / num_data


def time_plain(model, optimizer, data, generator) -> tuple[float, float]:
    """One epoch of the hand-written loop: (images per wall second, per CPU second)."""
    n = len(data)
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in torch.randperm(n, generator=generator).split(BATCH):
        x = torch.bernoulli(data[index], generator=generator)
        loss = model.loss(x, n)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


def main(args):
    torch.set_num_threads(args.threads)
    pyro.settings.set(module_local_params=True)
    pyro.enable_validation(args.validate)
    pyro.set_rng_seed(0)
    images = synthetic_images(args.images + 256)
    data = Dataset("synthetic-784", TensorSplit(images[:args.images], "dynamic"),
                   TensorSplit(images[args.images:], "fixed"), "image")
    model = get_model("vae", input_dim=INPUT, latent_dim=LATENT, hidden_dims=(HIDDEN,))
    guide = get_guide("diagonal_normal", model, hidden_dims=(HIDDEN,))
    # Two hand-written peers: Adam as most loops write it (PyTorch's per-tensor default on CPU),
    # and Adam fused into one kernel, as the engine uses it: against the second, the ratio is the
    # engine's own overhead (Pyro's traces, distributions and plates) and nothing else.
    peers = {name: PlainVAE() for name in ("plain", "plain_fused")}
    optimizers = {
        "plain": torch.optim.Adam(peers["plain"].parameters(), lr=1e-3),
        "plain_fused": torch.optim.Adam(peers["plain_fused"].parameters(), lr=1e-3, fused=True),
    }
    generator = torch.Generator().manual_seed(0)

    rates = {(runner, clock): [] for runner in ("engine", *peers) for clock in ("wall", "cpu")}
    ratios = {(peer, clock): [] for peer in peers for clock in ("wall", "cpu")}
    for round_ in range(args.rounds + 1):  # round 0 warms all up and is not counted
        this_round = {"engine": _engine_epoch(model, guide, data, round_)}
        for name, vae in peers.items():
            this_round[name] = time_plain(vae, optimizers[name], images[:args.images], generator)
        if round_ == 0:
            continue
        for runner, (wall, cpu) in this_round.items():
            rates[runner, "wall"].append(wall)
            rates[runner, "cpu"].append(cpu)
        for peer, clock in ratios:
            index = 0 if clock == "wall" else 1
            ratios[peer, clock].append(this_round["engine"][index] / this_round[peer][index])

    result = {
        "benchmark": "train_throughput",
        "model": f"VAE {INPUT}-{HIDDEN}-{LATENT}, batch {BATCH}, analytic KL",
        "images_per_round": args.images,
        "rounds": args.rounds,
        "threads": args.threads,
        "pyro_validation": args.validate,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average_1min": os.getloadavg()[0],
    }
    for (runner, clock), values in rates.items():
        result[f"{runner}_images_per_{clock}_s"] = statistics.median(values)
    for (peer, clock), values in ratios.items():
        result[f"ratio_to_{peer}_{clock}"] = statistics.median(values)
    print(json.dumps(result, indent=2))
    print(f"| {result['model']} | {result['threads']} | "
          f"{result['engine_images_per_cpu_s']:.0f} | {result['plain_images_per_cpu_s']:.0f} | "
          f"{result['plain_fused_images_per_cpu_s']:.0f} | "
          f"{result['ratio_to_plain_cpu']:.2f} ({result['ratio_to_plain_wall']:.2f}) | "
          f"{result['ratio_to_plain_fused_cpu']:.2f} ({result['ratio_to_plain_fused_wall']:.2f}) |")
    return result


def _engine_epoch(model, guide, data, round_) -> tuple[float, float]:
    """One training epoch through ``zoo.fit``: (images per wall second, per CPU second). The
    engine's own clocks cover the training loop only, not its per-epoch held-out evaluation."""
    history = fit(model, guide, data, objective="meanfield", epochs=1, batch_size=BATCH,
                  lr=1e-3, seed=round_, progress=False, eval_batch_size=256)
    return history[-1]["points_per_second"], len(data.train) / history[-1]["cpu_seconds"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--validate", action="store_true",
                        help="keep Pyro's argument validation on (off in the engine's CLI runs)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 1280, 2
    main(args)
