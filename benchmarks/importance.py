"""Benchmark: the zoo's vectorized importance-sampled log-likelihood against Pyro's
``pyro.infer.Importance`` on the same trained VAE, and its peak memory at K = 5,000.

What it shows:

1. Speed. Both estimate :math:`\\log p(x) \\approx \\log \\frac1K \\sum_k p(x, z_k)/q(z_k|x)` with
   K = 1,000 guide particles per image for the same model and guide (a 64-400-20 VAE trained
   briefly on scikit-learn's binarized digits with the zoo's engine). ``Importance`` draws one
   trace per particle per image; ours draws particles as a vectorized plate, in chunks. We report
   images x particles per second of each, measured in one run, and their ratio (target >= 50x),
   plus the largest gap between the two estimates in units of their standard errors.
2. Memory. Peak growth of resident memory during ``log_likelihood`` with K = 5,000 on 1,000 test
   images (the 359 digits test images tiled) for several chunk sizes, each in a fresh
   subprocess, and at K = 1,000: the peak follows ``chunk_size x batch_size``, not K.

Run: ``OMP_NUM_THREADS=1 python benchmarks/importance.py`` (``--quick`` for a smoke run).
Data: ``zoo.data.load("digits")`` (80/20 split, seed 0); seed 0 throughout.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time

import pyro
import torch
from pyro.infer import Importance

from zoo.data import load
from zoo.infer.importance import log_likelihood
from zoo.registry import get_guide, get_model
from zoo.train import fit


def trained_vae(epochs: int, seed: int = 0):
    pyro.set_rng_seed(seed)
    data = load("digits")
    model = get_model("vae", input_dim=data.num_features, latent_dim=20, hidden_dims=(400,))
    guide = get_guide("diagonal_normal", model, hidden_dims=(400,))
    fit(model, guide, data, epochs=epochs, batch_size=128, lr=3e-3, seed=seed, device="cpu",
        progress=False)
    return model.eval(), guide.eval(), data


@torch.no_grad()
def pyro_importance(model, guide, x, num_particles):
    """One ``Importance`` run per image (its weights are one per whole trace)."""
    estimates = []
    for n in range(x.shape[0]):
        posterior = Importance(model, guide, num_samples=num_particles).run(x[n : n + 1])
        estimates.append(posterior.get_log_normalizer().item())
    return torch.tensor(estimates)


MEMORY_PROBE = """
import os, sys, threading, time
import pyro, torch
from zoo.data import load
from zoo.infer.importance import log_likelihood
from zoo.registry import get_guide, get_model

pyro.settings.set(module_local_params=True)
pyro.set_rng_seed(0)
K, CHUNK, BATCH = (int(a) for a in sys.argv[1:4])
model = get_model("vae", input_dim=64, latent_dim=20, hidden_dims=(400,))  # weights do not
guide = get_guide("diagonal_normal", model, hidden_dims=(400,))  # change the memory needed
x = load("digits").test.dense().repeat(3, 1)[:1000]  # 1,000 test images (359 tiled)
log_likelihood(model, guide, x[:BATCH], 2 * CHUNK, CHUNK, BATCH)  # warm up allocator, imports
page = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page

peak, done = [rss()], [False]

def sample():
    while not done[0]:
        peak.append(rss())
        time.sleep(0.002)

before = rss()
thread = threading.Thread(target=sample)
thread.start()
log_likelihood(model, guide, x, K, CHUNK, BATCH)
done[0] = True
thread.join()
print((max(peak) - before) / 2**20)
"""


def peak_memory_mib(chunk_size: int, num_particles: int, batch_size: int) -> float:
    """Peak RSS growth (MiB) during one ``log_likelihood`` call on 1,000 images, sampled every
    2 ms from ``/proc/self/statm`` in a fresh interpreter (so earlier runs leave no cache)."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(num_particles), str(chunk_size), str(batch_size)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(args):
    torch.manual_seed(0)
    pyro.settings.set(module_local_params=True)
    model, guide, data = trained_vae(args.epochs)
    test = data.test.dense()  # [359, 64]
    k = args.num_particles

    x_pyro = test[: args.pyro_images]
    start = time.perf_counter()
    pyro_est = pyro_importance(model, guide, x_pyro, k)
    pyro_rate = x_pyro.shape[0] * k / (time.perf_counter() - start)

    x_ours = test[: args.images]
    log_likelihood(model, guide, x_ours[:4], k, args.chunk_size, 4)  # warm up
    start = time.perf_counter()
    ours = log_likelihood(model, guide, x_ours, k, args.chunk_size, args.batch_size)
    ours_rate = x_ours.shape[0] * k / (time.perf_counter() - start)
    n = x_pyro.shape[0]
    gap = (ours.log_likelihood[:n] - pyro_est).abs() / ours.stderr[:n].clamp(min=1e-6)

    memory = {}
    if not args.quick:
        for chunk in args.memory_chunks:
            memory[f"K={args.memory_particles},chunk={chunk}"] = peak_memory_mib(
                chunk, args.memory_particles, args.batch_size)
        small_k = args.memory_particles // 5  # same chunk, a fifth of the particles
        chunk = max(c for c in args.memory_chunks if c <= small_k)
        memory[f"K={small_k},chunk={chunk}"] = peak_memory_mib(
            chunk, small_k, args.batch_size)

    result = {
        "benchmark": "importance-sampled log-likelihood, vectorized vs pyro.infer.Importance",
        "data": "digits test split (binarized once, seed 0)",
        "model": "vae 64-400-20 + diagonal_normal, engine-trained "
                 f"{args.epochs} epochs (batch 128, lr 3e-3, seed 0)",
        "num_particles": k,
        "zoo_images": x_ours.shape[0],
        "pyro_images": n,
        "zoo_image_particles_per_s": ours_rate,
        "pyro_image_particles_per_s": pyro_rate,
        "speedup": ours_rate / pyro_rate,
        "zoo_log_likelihood_mean": ours.log_likelihood.mean().item(),
        "zoo_stderr_mean": ours.stderr.mean().item(),
        "zoo_ess_mean": ours.ess.mean().item(),
        "zoo_khat_mean": ours.summary()["khat_mean"],
        "max_gap_in_stderr_vs_pyro": gap.max().item(),
        "chunk_size": args.chunk_size,
        "batch_size": args.batch_size,
        "peak_rss_growth_mib": memory,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result, indent=2))
    mem = ", ".join(f"{key}: {v:.0f} MiB" for key, v in memory.items()) or "skipped"
    print("| K | zoo img x particles/s | Importance img x particles/s | speedup | "
          "log p(x) (K) | ESS | peak RSS growth |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {k} | {ours_rate:,.0f} | {pyro_rate:,.0f} | {ours_rate / pyro_rate:.0f}x | "
          f"{result['zoo_log_likelihood_mean']:.2f} | {result['zoo_ess_mean']:.1f} | {mem} |")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--num-particles", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--pyro-images", type=int, default=4)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--memory-particles", type=int, default=5000)
    parser.add_argument("--memory-chunks", type=int, nargs="+", default=[100, 500, 2500])
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.num_particles, args.images, args.pyro_images = 2, 50, 20, 2
    if math.isnan(main(args)["speedup"]):
        sys.exit(1)
