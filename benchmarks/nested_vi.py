"""Benchmark: Table 1 of Nested Variational Inference (ring GMM annealing), K = 4 and K = 8.

What it measures, per method (AVO, NVI, NVIR, NVI*, NVIR*) and number of levels K:

* **Accuracy.** The sampler of :mod:`zoo.infer.nested` on the 8-mode ring of [1] §4.1
  (gamma_0 = N(0, 5^2 I), Gaussian kernels with 50 ReLU units, Adam lr 1e-3, 288 samples split
  across levels: 288 // K particles), trained for at most ``--iterations`` iterations and at most
  ``--train-seconds`` seconds. Evaluated *as trained*: NVIR and NVIR* resample (systematic)
  between levels, the others do not; 100 batches of 100 samples; log Z-hat (mean over batches of
  log of the batch's mean weight; exact log 8 = 2.079) and ESS = (sum w)^2 / sum w^2 in percent
  of the batch; mean and standard error over seeds. The paper trains 20k iterations, 10 seeds.
* **Speed.** Time per training iteration against a plain-PyTorch implementation of the same
  sampler (``nested_vi_reference.py``: same networks, losses, resampling, per-level backward),
  measured in the same process in interleaved blocks; we report the median over blocks of the
  ratio ours / plain. Pyro validation is off for the timed and trained runs (the peer has none).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/nested_vi.py [--seeds 3 --train-seconds 300]``;
``--quick`` is a seconds-long smoke run. Prints JSON, then a markdown table beside the paper's.

**References:**

1. *Nested Variational Inference*, H. Zimmermann, H. Wu, B. Esmaeili, J.-W. van de Meent (2021),
   NeurIPS, arXiv:2106.11302 (Table 1)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

import pyro
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nested_vi_reference import PlainRingNVI  # noqa: E402

from zoo.infer.nested import NestedObjective, evaluate_nested  # noqa: E402
from zoo.infer.nested_programs import NestedPrograms  # noqa: E402
from zoo.models.targets import GeometricPath, RingGMM  # noqa: E402
from zoo.train import fit_nested  # noqa: E402

# method: (divergence, resample, schedule)
METHODS = {
    "AVO": ("avo", False, "linear"),
    "NVI": ("nvi-rkl", False, "linear"),
    "NVIR": ("nvi-rkl", True, "linear"),
    "NVI*": ("nvi-rkl", False, "learned"),
    "NVIR*": ("nvi-rkl", True, "learned"),
}
# Table 1 of [1]: log Z-hat / ESS %.
PAPER = {
    4: {"AVO": (1.96, 44), "NVI": (1.97, 45), "NVIR": (1.98, 99), "NVI*": (2.06, 51),
        "NVIR*": (2.06, 95)},
    8: {"AVO": (2.05, 46), "NVI": (2.06, 41), "NVIR": (2.06, 97), "NVI*": (2.07, 54),
        "NVIR*": (2.08, 97)},
}


def _build(method, num_levels, seed):
    divergence, resample, schedule = METHODS[method]
    pyro.set_rng_seed(seed)
    programs = NestedPrograms(GeometricPath(RingGMM(), 5.0), num_levels, schedule)
    plain = PlainRingNVI(num_levels, learned=schedule == "learned")
    return programs, NestedObjective(divergence, resample=resample), plain


def time_ratio(method, num_levels, blocks, block_iterations):
    """Median over interleaved blocks of (our seconds per iteration) / (plain PyTorch's)."""
    programs, objective, plain = _build(method, num_levels, seed=12345)
    divergence, resample, _ = METHODS[method]
    num_particles = 288 // num_levels
    ours_opt = torch.optim.Adam(programs.parameters(), lr=1e-3)
    plain_opt = torch.optim.Adam(plain.parameters(), lr=1e-3)

    def ours():
        ours_opt.zero_grad()
        objective(programs, num_particles, backward=True)
        ours_opt.step()

    def reference():
        plain_opt.zero_grad()
        plain.step(num_particles, divergence, resample)
        plain_opt.step()

    def seconds(step):
        start = time.perf_counter()
        for _ in range(block_iterations):
            step()
        return (time.perf_counter() - start) / block_iterations

    seconds(ours), seconds(reference)  # warm-up
    pairs = [(seconds(ours), seconds(reference)) for _ in range(blocks)]
    return {"ours_ms": 1e3 * statistics.median(p[0] for p in pairs),
            "plain_ms": 1e3 * statistics.median(p[1] for p in pairs),
            "ratio": statistics.median(p[0] / p[1] for p in pairs)}


def train_and_evaluate(job):
    method, num_levels, seed, opts = job
    torch.set_num_threads(1)
    pyro.enable_validation(False)
    with pyro.settings.context(module_local_params=True):
        programs, objective, _ = _build(method, num_levels, seed)
        # The engine, with one cheap batch per progress check (every 500 iterations) and the
        # time budget; the reported evaluation is the full one, afterwards.
        history = fit_nested(programs, objective, num_particles=288 // num_levels,
                             iterations=opts["iterations"], eval_every=500, eval_batches=1,
                             eval_particles=opts["eval_particles"], seed=seed, device="cpu",
                             max_seconds=opts["train_seconds"], progress=False)
        iterations = history[-1]["iteration"]
        train_seconds = sum(h["seconds"] for h in history)
        cpu_seconds = sum(h["cpu_seconds"] for h in history)  # < wall time on shared cores
        result = evaluate_nested(programs, objective, opts["eval_particles"], opts["eval_batches"])
        timing = (time_ratio(method, num_levels, opts["time_blocks"], opts["time_iterations"])
                  if seed == opts["first_seed"] else None)
    return {"method": method, "K": num_levels, "seed": seed, "iterations": iterations,
            "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
            "betas": programs.schedule().tolist(),
            **result, "timing": timing}


def _mean_sem(values):
    mean = statistics.fmean(values)
    sem = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, sem


def summarize(runs, levels, methods):
    table = {}
    for K in levels:
        for method in methods:
            rows = [r for r in runs if r["K"] == K and r["method"] == method]
            log_z, log_z_sem = _mean_sem([r["log_z"] for r in rows])
            ess, ess_sem = _mean_sem([r["ess_percent"] for r in rows])
            timing = next(r["timing"] for r in rows if r["timing"] is not None)
            table[f"{method} K={K}"] = {
                "log_z": log_z, "log_z_sem_over_seeds": log_z_sem, "ess_percent": ess,
                "ess_percent_sem_over_seeds": ess_sem, "paper": PAPER[K][method],
                "iterations": [r["iterations"] for r in rows], "time": timing}
    return table


def markdown(table, levels, methods):
    head = "| method | " + " | ".join(f"K={K} ours | K={K} paper | K={K} time ours/plain"
                                      for K in levels) + " |"
    lines = [head, "|---|" + "---|---|---|" * len(levels)]
    for method in methods:
        cells = []
        for K in levels:
            row = table[f"{method} K={K}"]
            paper = row["paper"]
            cells += [f"{row['log_z']:.2f} / {row['ess_percent']:.0f}",
                      f"{paper[0]:.2f} / {paper[1]}",
                      f"{row['time']['ratio']:.2f}x ({row['time']['ours_ms']:.1f} vs "
                      f"{row['time']['plain_ms']:.1f} ms)"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args):
    opts = {"iterations": args.iterations, "train_seconds": args.train_seconds,
            "eval_particles": 100, "eval_batches": args.eval_batches, "first_seed": 0,
            "time_blocks": args.time_blocks, "time_iterations": args.time_iterations}
    levels = tuple(int(k) for k in args.levels.split(","))
    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    jobs = [(m, K, s, opts) for s in range(args.seeds) for K in levels for m in methods]
    start = time.perf_counter()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            runs = pool.map(train_and_evaluate, jobs, chunksize=1)
    else:
        runs = [train_and_evaluate(job) for job in jobs]
    table = summarize(runs, levels, methods)
    report = {"benchmark": "nested_vi ring GMM (Table 1 of arXiv:2106.11302)",
              "protocol": "288 // K training particles; evaluated as trained (NVIR/NVIR* resample "
                          f"between levels) on {opts['eval_batches']} batches x 100 samples; "
                          f"{args.seeds} seed(s); at most {args.iterations} iterations and "
                          f"{args.train_seconds} s of training per run; {args.workers} worker "
                          "process(es), 1 thread each",
              "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "torch": torch.__version__, "pyro": pyro.__version__,
              "wall_seconds": round(time.perf_counter() - start, 1), "table": table, "runs": runs}
    print(json.dumps(report, indent=1))
    print()
    print(markdown(table, levels, methods))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--levels", default="4,8", help="comma-separated numbers of levels K")
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--train-seconds", type=float, default=300.0)
    parser.add_argument("--eval-batches", type=int, default=100)
    parser.add_argument("--time-blocks", type=int, default=7)
    parser.add_argument("--time-iterations", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.iterations, args.train_seconds = 1, 30, 5.0
        args.eval_batches, args.time_blocks, args.time_iterations, args.workers = 3, 2, 3, 1
    torch.set_num_threads(1)
    main(args)
