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

With ``--device cuda`` ours runs on the GPU (the model is trained on the CPU, then moved), and
the same call on the CPU is timed beside it; ``Importance`` stays on the CPU, and memory is the
peak of ``torch.cuda.max_memory_allocated`` during the call.

Run: ``OMP_NUM_THREADS=1 python benchmarks/importance.py`` (``--quick`` for a smoke run;
``--device cuda``). Data: ``zoo.data.load("digits")`` (80/20 split, seed 0); seed 0 throughout.
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
from zoo.train import fit, resolve_device


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


def timed_log_likelihood(model, guide, x, k, chunk_size, batch_size, device):
    """``(result, images x particles per second)`` of one call on ``device`` (synchronized)."""
    model, guide = model.to(device), guide.to(device)
    log_likelihood(model, guide, x[:4], min(k, 2 * chunk_size), chunk_size, 4)  # warm up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = log_likelihood(model, guide, x, k, chunk_size, batch_size)  # results: on the CPU
    return result, x.shape[0] * k / (time.perf_counter() - start)


def gpu_peak_memory_mib(model, guide, x, chunk_size, num_particles, batch_size, device):
    """Peak growth of the GPU memory torch allocates during one call (MiB)."""
    model, guide = model.to(device), guide.to(device)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    log_likelihood(model, guide, x, num_particles, chunk_size, batch_size)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


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
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    ours, ours_rate = timed_log_likelihood(model, guide, x_ours, k, args.chunk_size,
                                           args.batch_size, device)
    cpu_rate = None
    if gpu:  # the same call on this machine's CPU, in the same run
        _, cpu_rate = timed_log_likelihood(model, guide, x_ours, k, args.chunk_size,
                                           args.batch_size, torch.device("cpu"))
    n = x_pyro.shape[0]
    gap = (ours.log_likelihood[:n] - pyro_est).abs() / ours.stderr[:n].clamp(min=1e-6)

    memory = {}
    if not args.quick:
        small_k = args.memory_particles // 5  # same chunk, a fifth of the particles
        small_chunk = max(c for c in args.memory_chunks if c <= small_k)
        runs_ = [(chunk, args.memory_particles) for chunk in args.memory_chunks]
        runs_.append((small_chunk, small_k))
        tiled = test.repeat(3, 1)[:1000]  # 1,000 test images (359 tiled), as the probe does
        for chunk, particles in runs_:
            key = f"K={particles},chunk={chunk}"
            memory[key] = (gpu_peak_memory_mib(model, guide, tiled, chunk, particles,
                                               args.batch_size, device) if gpu
                           else peak_memory_mib(chunk, particles, args.batch_size))

    result = {
        "benchmark": "importance-sampled log-likelihood, vectorized vs pyro.infer.Importance",
        "data": "digits test split (binarized once, seed 0)",
        "model": "vae 64-400-20 + diagonal_normal, engine-trained "
                 f"{args.epochs} epochs (batch 128, lr 3e-3, seed 0)",
        "num_particles": k,
        "zoo_images": x_ours.shape[0],
        "pyro_images": n,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if gpu else platform.machine(),
        "zoo_image_particles_per_s": ours_rate,
        "zoo_cpu_image_particles_per_s": cpu_rate,
        "speedup_vs_same_call_on_cpu": None if cpu_rate is None else ours_rate / cpu_rate,
        "pyro_image_particles_per_s": pyro_rate,
        "speedup": ours_rate / pyro_rate,
        "zoo_log_likelihood_mean": ours.log_likelihood.mean().item(),
        "zoo_stderr_mean": ours.stderr.mean().item(),
        "zoo_ess_mean": ours.ess.mean().item(),
        "zoo_khat_mean": ours.summary()["khat_mean"],
        "max_gap_in_stderr_vs_pyro": gap.max().item(),
        "chunk_size": args.chunk_size,
        "batch_size": args.batch_size,
        "peak_memory_growth_mib": memory,
        "memory_measure": "torch.cuda.max_memory_allocated" if gpu else "process RSS",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(json.dumps(result, indent=2))
    mem = ", ".join(f"{key}: {v:.0f} MiB" for key, v in memory.items()) or "skipped"
    on_cpu = "" if cpu_rate is None else f" ({cpu_rate:,.0f} on the CPU)"
    print("| device | K | zoo img x particles/s | Importance img x particles/s (CPU) | "
          "speedup | log p(x) (K) | ESS | peak memory growth |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {result['device_name']} | {k} | {ours_rate:,.0f}{on_cpu} | {pyro_rate:,.0f} | "
          f"{ours_rate / pyro_rate:.0f}x | {result['zoo_log_likelihood_mean']:.2f} | "
          f"{result['zoo_ess_mean']:.1f} | {mem} |")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--device", default="cpu", help="where ours runs: cpu, cuda or cuda:N")
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
