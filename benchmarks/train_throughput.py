"""Benchmark: training throughput of the zoo's engine against a hand-written PyTorch loop.

Both train the same VAE (784-400-20 MLPs, softplus, Bernoulli likelihood, diagonal Gaussian
encoder) on the same 784-dimensional binary images with batch 128 and the same loss (negative
ELBO with the KL term analytic: the engine with ``--elbo meanfield``). Rounds alternate between
the two in one process, and we report the median images per second of each and the median of the
per-round ratios, so that load from other processes hits both alike.

Run: ``OMP_NUM_THREADS=1 python benchmarks/train_throughput.py`` (``--quick`` for a smoke run).
Target: engine / plain PyTorch >= 0.9 (Pyro's default SVI loop measured 0.5-0.7 here).
"""

from __future__ import annotations

import argparse
import json
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


def time_plain(model, optimizer, data, generator) -> float:
    n = len(data)
    start = time.perf_counter()
    for index in torch.randperm(n, generator=generator).split(BATCH):
        x = torch.bernoulli(data[index], generator=generator)
        loss = model.loss(x, n)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return n / (time.perf_counter() - start)


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
    plain = PlainVAE()
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    engine_rates, plain_rates, ratios = [], [], []
    for round_ in range(args.rounds + 1):  # round 0 warms both up and is not counted
        engine = _engine_epoch(model, guide, data, round_)
        plain_rate = time_plain(plain, plain_optimizer, images[:args.images], generator)
        if round_ > 0:
            engine_rates.append(engine)
            plain_rates.append(plain_rate)
            ratios.append(engine / plain_rate)

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
        "engine_images_per_s": statistics.median(engine_rates),
        "plain_torch_images_per_s": statistics.median(plain_rates),
        "ratio_median": statistics.median(ratios),
    }
    print(json.dumps(result, indent=2))
    print(f"| {result['model']} | {result['threads']} | {result['engine_images_per_s']:.0f} | "
          f"{result['plain_torch_images_per_s']:.0f} | {result['ratio_median']:.2f} |")
    return result


def _engine_epoch(model, guide, data, round_) -> float:
    """One training epoch through ``zoo.fit``; its own clock covers the training loop only
    (the per-epoch held-out evaluation is timed separately by the engine)."""
    history = fit(model, guide, data, objective="meanfield", epochs=1, batch_size=BATCH,
                  lr=1e-3, seed=round_, progress=False, eval_batch_size=256)
    return history[-1]["points_per_second"]


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
