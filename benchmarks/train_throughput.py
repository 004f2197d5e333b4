"""Benchmark: training throughput of the zoo's engine against a hand-written PyTorch loop, on
the CPU or on a GPU (``--device cuda``).

Both train the same VAE (784-400-20 MLPs, softplus, Bernoulli likelihood, diagonal Gaussian
encoder) on the same 784-dimensional images, binarized afresh every epoch, with the same loss
(negative ELBO with the KL term analytic: the engine with ``--elbo meanfield``) and Adam.
Rounds alternate between the runners in one process, and we report the median images per
second of each and the median of the per-round ratios, so that load from other processes hits
all alike. Runners:

- ``engine``: ``zoo.fit``; ``engine_jit``: ``zoo.fit`` with the traced loss
  (``objective_options={"jit": True}``, :mod:`zoo.infer.traced`); on a GPU also
  ``engine_jit_optimized`` (``jit="optimized"``: TorchScript's optimizing executor, which fuses
  elementwise kernels on CUDA). Each round runs two epochs and times the second (the first
  traces, warms caches and allocators); held-out evaluation is not timed.
- ``plain``: the hand-written loop with ``torch.optim.Adam`` as loops usually write it
  (PyTorch's default: per-tensor on the CPU, ``foreach`` on a GPU); ``plain_fused``: the same
  loop with Adam fused into one kernel, as the engine uses it. On a GPU the loop keeps the
  images on the device, draws the permutation and the binarization there from a device
  generator, and never reads the loss back (the fastest loop: a hard peer).

Clocks. On the CPU: the process's CPU time, which other processes on shared cores cannot
inflate (with one thread it is the time the work took on the core it had), and wall time in
brackets; the engine's own clocks of its training pass. On a GPU: wall time with the device
synchronized at both ends of the timed epoch (the engine's is taken by a schedule at its first
step and by its per-epoch metrics hook at the end, so it includes the engine's end-of-epoch
work).

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_throughput.py`` (CPU: 12,800 images per round,
batch 128) or ``python benchmarks/train_throughput.py --device cuda`` (60,000 images, batches
128 and 1024); ``--quick`` for a smoke run. Targets: engine / hand-written loop >= 0.9 at both
batch sizes on a GPU; >= 1.0 against the default-Adam loop on the CPU.
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
from zoo.train import fit, resolve_device

INPUT, HIDDEN, LATENT = 784, 400, 20


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_plain(model, optimizer, data, generator, batch_size, device) -> tuple[float, float]:
    """One epoch of the hand-written loop: (images per wall second, per CPU second)."""
    n = len(data)
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for index in torch.randperm(n, generator=generator, device=device).split(batch_size):
        x = torch.bernoulli(data[index], generator=generator)
        loss = model.loss(x, n)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


#: engine runners and their ``jit`` option
ENGINES = {"engine": False, "engine_jit": True, "engine_jit_optimized": "optimized"}


def time_engine(model, guide, data, round_, batch_size, device, jit,
                validate) -> tuple[float, float]:
    """The second of two epochs through ``zoo.fit``: (images per wall second, per CPU second).
    On the CPU the engine's own clocks of its training pass; on a GPU synchronized wall time
    from its first step to the end of the epoch."""
    marks = {}
    steps = -(-len(data.train) // batch_size)

    def clock(progress):  # a schedule: evaluated before every step, read here at the second
        if progress.step == steps + 1:  # epoch's first
            synchronize(device)
            marks["start"], marks["cpu"] = time.perf_counter(), time.process_time()
        return 0.0

    def stop(*_):  # per-epoch metrics, after the timed epoch only (eval_every=2)
        synchronize(device)
        marks["stop"], marks["cpu_stop"] = time.perf_counter(), time.process_time()
        return {}

    history = fit(model, guide, data, objective="meanfield", epochs=2, batch_size=batch_size,
                  lr=1e-3, seed=round_, progress=False, eval_every=2, eval_batch_size=1024,
                  device=str(device), validate=validate, extra_metrics=stop,
                  schedules={"benchmark_clock": clock},
                  objective_options={"jit": jit} if jit else {})
    n = len(data.train)
    if device.type == "cpu":
        return history[-1]["points_per_second"], n / history[-1]["cpu_seconds"]
    return n / (marks["stop"] - marks["start"]), n / (marks["cpu_stop"] - marks["cpu"])


def measure(args, device, batch_size, images) -> dict:
    """All runners at one batch size: medians of the rates and of the per-round ratios."""
    pyro.set_rng_seed(0)
    data = Dataset("synthetic-784", TensorSplit(images[:args.images], "dynamic"),
                   TensorSplit(images[args.images:], "fixed"), "image")
    model = get_model("vae", input_dim=INPUT, latent_dim=LATENT, hidden_dims=(HIDDEN,))
    guide = get_guide("diagonal_normal", model, hidden_dims=(HIDDEN,))
    peers = {name: PlainVAE().to(device) for name in ("plain", "plain_fused")}
    optimizers = {
        "plain": torch.optim.Adam(peers["plain"].parameters(), lr=1e-3),
        "plain_fused": torch.optim.Adam(peers["plain_fused"].parameters(), lr=1e-3, fused=True),
    }
    resident = images[:args.images].to(device)  # the loop's images, on the device
    generator = torch.Generator(device).manual_seed(0)
    engines = [e for e in ENGINES if e == "engine" or (
        args.jit and (device.type == "cuda" or e != "engine_jit_optimized"))]
    runners = (*engines, *peers)
    clocks = ("wall", "cpu")
    rates = {(r, c): [] for r in runners for c in clocks}
    ratios = {(e, p, c): [] for e in engines for p in peers for c in clocks}
    for round_ in range(args.rounds + 1):  # round 0 warms all up and is not counted
        this = {engine: time_engine(model, guide, data, round_, batch_size, device,
                                    ENGINES[engine], args.validate)
                for engine in engines}
        for name, vae in peers.items():
            this[name] = time_plain(vae, optimizers[name], resident, generator, batch_size,
                                    device)
        if round_ == 0:
            continue
        for runner, (wall, cpu) in this.items():
            rates[runner, "wall"].append(wall)
            rates[runner, "cpu"].append(cpu)
        for engine, peer, clock in ratios:
            i = clocks.index(clock)
            ratios[engine, peer, clock].append(this[engine][i] / this[peer][i])
    out = {"batch_size": batch_size}
    for (runner, clock), values in rates.items():
        out[f"{runner}_images_per_{clock}_s"] = statistics.median(values)
    for (engine, peer, clock), values in ratios.items():
        out[f"{engine}_to_{peer}_{clock}"] = statistics.median(values)
    return out


def main(args):
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    pyro.settings.set(module_local_params=True)
    pyro.enable_validation(args.validate)
    gpu = device.type == "cuda"
    if args.images is None:
        args.images = 60_000 if gpu else 12_800
    batch_sizes = args.batch_sizes or ([128, 1024] if gpu else [128])
    images = synthetic_images(args.images + 1024)
    result = {
        "benchmark": "train_throughput",
        "model": f"VAE {INPUT}-{HIDDEN}-{LATENT}, analytic KL",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if gpu else platform.processor()
        or platform.machine(),
        "clock": "synchronized wall time" if gpu else "process CPU time (wall in brackets)",
        "images_per_round": args.images,
        "rounds": args.rounds,
        "threads": args.threads,
        "pyro_validation": args.validate,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average_1min": os.getloadavg()[0],
        "batches": [measure(args, device, b, images) for b in batch_sizes],
    }
    print(json.dumps(result, indent=2))
    clock = "wall" if gpu else "cpu"
    for row in result["batches"]:
        cells = [f"{row[f'{r}_images_per_{clock}_s']:,.0f}"
                 for r in (*ENGINES, "plain", "plain_fused")
                 if f"{r}_images_per_{clock}_s" in row]
        ratios = [f"{row[f'{e}_to_{p}_{clock}']:.2f} ({row[f'{e}_to_{p}_wall']:.2f})"
                  if not gpu else f"{row[f'{e}_to_{p}_{clock}']:.2f}"
                  for e in ENGINES for p in ("plain", "plain_fused")
                  if f"{e}_to_{p}_{clock}" in row]
        print(f"| {result['device_name']} | {row['batch_size']} | {' | '.join(cells)} | "
              f"{' | '.join(ratios)} |")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--images", type=int, help="per round (default 12,800; 60,000 on a GPU)")
    parser.add_argument("--batch-sizes", type=int, nargs="+",
                        help="default 128 (CPU), 128 and 1024 (GPU)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-jit", dest="jit", action="store_false",
                        help="leave out the engine with the traced loss")
    parser.add_argument("--validate", action="store_true",
                        help="keep Pyro's argument validation on (off in the engine's CLI runs; "
                             "the traced loss then runs plain)")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 1280, 2
    main(args)
