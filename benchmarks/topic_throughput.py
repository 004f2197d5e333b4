r"""Benchmark: the engine on the topic models against hand-written PyTorch loops of the same models.

For each of ProdLDA, NVDM, CTM (``ctf`` guide, learned prior) and LDA (``dirichlet`` guide,
semi-amortized), a plain PyTorch module computes the same loss from the same networks as the
zoo's model and guide at their registry defaults (K = 50, each model's own batch size, Adam
settings and objective), and both train on 20 Newsgroups (``../shared/data/20news``, the
training split of 6,004 documents, seed 0). Rounds alternate between the engine (one epoch of
``zoo.train.fit``; its own clocks cover the training pass, not the held-out evaluation after it)
and the plain loop (a seeded permutation, row gathers of the dense counts held in memory, the
loss read back every step as ``total += loss.item()``), so that load from other processes hits
both alike; reported are the medians of documents per CPU second (per wall second in brackets)
and of the per-round ratios. With one thread, CPU time is the time the work took on the core it
had; other jobs on shared cores inflate wall time, not CPU time. The plain peers use
``torch.optim.Adam`` as loops usually write it (PyTorch's per-tensor default on CPU).

``--whole-run E`` times a whole ``zoo train prodlda --data 20news --epochs E`` (a subprocess,
start to finish: imports, data, training, held-out metrics every ``eval_every`` epochs and
after the last, checkpoints, summary, figures) against this file's plain script for the same E
epochs (``--plain-run``: imports, data, the hand-written loop, and the same final metrics:
held-out perplexity with 8 samples per document, NPMI and diversity), alternating, on wall
time, and breaks the zoo run into its phases (in process).

Run: ``OMP_NUM_THREADS=1 python benchmarks/topic_throughput.py --out DIR`` (``--quick`` for a
smoke run on a synthetic corpus). Target: engine / hand-written >= 0.9 per training epoch, and
a whole run <= 1.25x the plain script's wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyro
import torch
from _report import write_report
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import data as zoo_data  # noqa: E402
from zoo.data import Dataset  # noqa: E402
from zoo.data.text import SparseCountsSplit  # noqa: E402
from zoo.runs import build  # noqa: E402
from zoo.train import TrainConfig, fit  # noqa: E402

K = 50


# ------------------------------------------------------------------ the hand-written models
class ShiftBatchNorm(nn.BatchNorm1d):
    """TensorFlow's ``batch_norm(center=True, scale=False)``, AVITM's encoder heads."""

    def __init__(self, n):
        super().__init__(n, affine=False)
        self.shift = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return super().forward(x) + self.shift


def gaussian_heads(hidden, k, norm=None):
    """(loc, raw scale) linear heads; the scale head starts at softplus^-1 ~ 0.47 as the zoo's."""
    loc, raw = nn.Linear(hidden, k), nn.Linear(hidden, k)
    nn.init.zeros_(raw.weight)
    nn.init.constant_(raw.bias, -0.5)
    norms = (nn.Identity(), nn.Identity()) if norm is None else (norm(k), norm(k))
    return loc, raw, *norms


class PlainProdLDA(nn.Module):
    """AVITM's ProdLDA as a hand-written module: softplus MLP encoder with shifted BatchNorm
    heads, dropout 0.6 on theta, BatchNorm on the decoder logits with a learned background,
    analytic KL to the Laplace prior N(0, 1 - 1/K)."""

    lr, betas, batch_size = 2e-3, (0.99, 0.999), 200

    def __init__(self, v, k=K):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(v, 100), nn.Softplus(), nn.Linear(100, 100),
                                     nn.Softplus(), nn.Dropout(0.2))
        self.loc, self.raw_scale, self.loc_norm, self.scale_norm = gaussian_heads(
            100, k, ShiftBatchNorm)
        self.beta = nn.Linear(k, v, bias=False)
        self.logit_norm = nn.BatchNorm1d(v, affine=False)
        self.background = nn.Parameter(torch.zeros(v))
        self.theta_dropout = nn.Dropout(0.6)
        self.prior_var = 1.0 - 1.0 / k

    def posterior(self, x):
        h = self.encoder(x)
        return (self.loc_norm(self.loc(h)),
                F.softplus(self.scale_norm(self.raw_scale(h))) + 1e-4)

    def log_probs(self, z):
        theta = self.theta_dropout(torch.softmax(z, -1))
        return (self.logit_norm(self.beta(theta)) + self.background).log_softmax(-1)

    def elbo(self, x):
        loc, scale = self.posterior(x)
        z = loc + scale * torch.randn_like(loc)
        kl = 0.5 * ((scale**2 + loc**2) / self.prior_var - 1 + math.log(self.prior_var)
                    - 2 * scale.log()).sum(-1)
        return (x * self.log_probs(z)).sum(-1) - kl  # [batch], coefficient left out

    def loss(self, x):
        return -self.elbo(x).mean()


class PlainNVDM(nn.Module):
    """NVDM: one tanh layer of 500 on log(1 + x), Gaussian heads, softmax(R h + b), N(0, I)."""

    lr, betas, batch_size = 1e-3, (0.9, 0.999), 64

    def __init__(self, v, k=K):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(v, 500), nn.Tanh())
        self.loc, self.raw_scale, _, _ = gaussian_heads(500, k)
        self.decoder = nn.Linear(k, v)

    def posterior(self, x):
        h = self.encoder(torch.log1p(x))
        return self.loc(h), F.softplus(self.raw_scale(h)) + 1e-4

    def elbo(self, x):
        loc, scale = self.posterior(x)
        z = loc + scale * torch.randn_like(loc)
        kl = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
        return (x * self.decoder(z).log_softmax(-1)).sum(-1) - kl

    def loss(self, x):
        return -self.elbo(x).mean()


def householder_product(vectors):
    """U = H(v_1) ... H(v_T) for ``vectors [B, T, D]``."""
    d = vectors.shape[-1]
    u = torch.eye(d).expand(vectors.shape[0], d, d)
    for t in range(vectors.shape[-2]):
        v = vectors[:, t]
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        u = u - 2.0 * (u @ v.unsqueeze(-1)) * v.unsqueeze(-2)
    return u


class PlainCTM(nn.Module):
    """NVCTM-style CTM with the centralized transformation flow: q = N(U mu, U diag s^2 U^T)
    (reflections v_1 = mu, v_{t+1} = H(v_t) W_t v_t), a learned correlation prior N(m 1,
    s^2 D^-1/2 L L^T D^-1/2), torch's analytic MultivariateNormal KL, the product-of-experts
    decoder with BatchNorm and a background."""

    lr, betas, batch_size = 2e-3, (0.99, 0.999), 200

    def __init__(self, v, k=K, num_flows=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(v, 100), nn.Softplus(), nn.Linear(100, 100),
                                     nn.Softplus(), nn.Dropout(0.2))
        norm = lambda n: nn.BatchNorm1d(n, affine=False)  # noqa: E731
        self.loc, self.raw_scale, self.loc_norm, self.scale_norm = gaussian_heads(100, k, norm)
        self.mixers = nn.ModuleList(nn.Linear(k, k) for _ in range(num_flows - 1))
        for layer in self.mixers:
            nn.init.eye_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.prior_loc = nn.Parameter(torch.zeros(k))
        self.prior_log_diag = nn.Parameter(torch.full((k,), 0.5 * math.log(1 - 1 / k)))
        self.prior_offdiag = nn.Parameter(torch.zeros(k, k))
        self.topic_logits = nn.Parameter(0.01 * torch.randn(k, v))
        self.logit_norm = norm(v)
        self.background = nn.Parameter(torch.zeros(v))
        self.theta_dropout = nn.Dropout(0.6)

    def prior(self):
        L = torch.tril(self.prior_offdiag, -1) + torch.diag_embed(self.prior_log_diag.exp())
        norms = L.norm(dim=-1, keepdim=True)
        L = L / norms * norms.square().mean().sqrt()
        k = L.shape[0]
        return torch.distributions.MultivariateNormal(self.prior_loc.mean().expand(k),
                                                      scale_tril=L)

    def posterior(self, x):
        h = self.encoder(torch.log1p(x))
        loc = self.loc_norm(self.loc(h))
        scale = F.softplus(self.scale_norm(self.raw_scale(h))) + 1e-4
        v, vectors = loc, [loc]
        for layer in self.mixers:
            w = layer(v)
            n = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
            v = w - 2.0 * (w * n).sum(-1, keepdim=True) * n
            vectors.append(v)
        u = householder_product(torch.stack(vectors, 1))  # [B, K, K]
        r = torch.linalg.qr((u * scale.unsqueeze(-2)).transpose(-1, -2)).R
        sign = torch.sign(r.diagonal(dim1=-2, dim2=-1))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        scale_tril = (r * sign.unsqueeze(-1)).transpose(-1, -2)
        return torch.distributions.MultivariateNormal((u @ loc.unsqueeze(-1)).squeeze(-1),
                                                      scale_tril=scale_tril)

    def elbo(self, x):
        q = self.posterior(x)
        z = q.rsample()
        theta = self.theta_dropout(torch.softmax(z, -1))
        log_p = (self.logit_norm(theta @ self.topic_logits) + self.background).log_softmax(-1)
        return (x * log_p).sum(-1) - torch.distributions.kl_divergence(q, self.prior())

    def loss(self, x):
        return -self.elbo(x).mean()


class PlainLDA(nn.Module):
    """LDA with the topic assignments summed out, semi-amortized as the zoo trains it: each
    batch's document Dirichlets found by 20 E-step updates from flat proportions, the topics'
    Dirichlets learned by the reparameterized ELBO gradient (parameters stored / 5: five times
    the encoder's step), the encoder regressed onto the E-step's Dirichlets."""

    lr, betas, batch_size = 1e-2, (0.9, 0.999), 200

    def __init__(self, v, k=K, steps=20, num_data=6004):
        super().__init__()
        self.k, self.steps, self.num_data, self.scale = k, steps, num_data, 5.0
        self.encoder = nn.Sequential(nn.Linear(v, 100), nn.Softplus(), nn.Linear(100, 100),
                                     nn.Softplus())
        self.head = nn.Linear(100, k + 1)
        with torch.no_grad():
            self.head.weight[-1].zero_()
            self.head.bias[-1] = math.log(10.0 * k)
        self.topic_logits = nn.Parameter(0.5 * torch.randn(k, v) / self.scale)
        self.topic_log_total = nn.Parameter(torch.full((k, 1), math.log(10.0 * v)) / self.scale)
        self.alpha, self.eta = torch.full((k,), 1.0 / k), torch.full((v,), 1.0 / k)

    def topic_concentration(self):
        return ((self.scale * self.topic_log_total).exp()
                * torch.softmax(self.scale * self.topic_logits, -1) + 0.05)

    def e_step(self, x, exp_elog_beta):
        gamma = x.new_ones(x.shape[0], self.k)
        for _ in range(self.steps):
            e = (torch.digamma(gamma) - torch.digamma(gamma.sum(-1, keepdim=True))).exp()
            norm = (e @ exp_elog_beta).clamp_min(torch.finfo(x.dtype).tiny)
            gamma = self.alpha + e * ((x / norm) @ exp_elog_beta.T)
        return gamma

    def loss(self, x):
        Dir = torch.distributions.Dirichlet
        lam = self.topic_concentration()  # [K, V]
        with torch.no_grad():
            elog = torch.digamma(lam) - torch.digamma(lam.sum(-1, keepdim=True))
            gamma = self.e_step(x, elog.exp())
            excess = (gamma - 0.05).clamp_min(1e-6)
            target = torch.cat([excess.log(), excess.sum(-1, keepdim=True).log()], -1)
            gamma = excess + 0.05
        raw = self.head(self.encoder(torch.log1p(x)))  # [B, K + 1]
        mean = torch.softmax(target[:, :-1], -1)
        amortization = (-(mean * torch.log_softmax(raw[:, :-1], -1)).sum(-1)
                        + 0.5 * (raw[:, -1] - target[:, -1]).pow(2))
        beta = Dir(lam).rsample()  # [K, V]
        q_theta = Dir(gamma)
        theta = q_theta.rsample()  # [B, K]
        log_lik = (x * (theta @ beta).clamp_min(torch.finfo(x.dtype).tiny).log()).sum(-1)
        local = log_lik + Dir(self.alpha).log_prob(theta) - q_theta.log_prob(theta)
        scale = self.num_data / x.shape[0]
        elbo = scale * local.sum() + (Dir(self.eta).log_prob(beta) - Dir(lam).log_prob(beta)).sum()
        return (-elbo + scale * amortization.sum()) / self.num_data


PLAIN = {"prodlda": PlainProdLDA, "nvdm": PlainNVDM, "ctm": PlainCTM, "lda": PlainLDA}
#: the zoo's side: model options beyond the defaults (CTM: the learned-prior phase, from the
#: first step, so that both sides run the same, costlier, program)
ZOO_OPTIONS = {"prodlda": {"num_topics": K}, "nvdm": {"latent_dim": K},
               "ctm": {"num_topics": K, "prior_warmup": 0}, "lda": {"num_topics": K}}


# ----------------------------------------------------------------------------- timing
def plain_epoch(module, optimizer, dense, generator) -> tuple[float, float]:
    """One epoch of the hand-written loop: (documents per wall second, per CPU second)."""
    n = dense.shape[0]
    module.train()
    start, cpu_start = time.perf_counter(), time.process_time()
    total = 0.0
    for index in torch.randperm(n, generator=generator).split(module.batch_size):
        loss = module.loss(dense[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item()
    if not math.isfinite(total):
        raise FloatingPointError("the hand-written loop diverged")
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu_start)


def engine_epoch(model, guide, data, seed) -> tuple[float, float]:
    """One epoch through ``zoo.fit`` at the model's defaults: (docs per wall s, per CPU s)."""
    config = TrainConfig(**{**model.default_train_config, "epochs": 1, "seed": seed,
                            "device": "cpu", "validate": False})
    history = fit(model, guide, data, config, progress=False)
    return history[-1]["points_per_second"], len(data.train) / history[-1]["cpu_seconds"]


def throughput(name, data, rounds) -> dict:
    pyro.set_rng_seed(0)
    model, guide = build(name, None, data, ZOO_OPTIONS[name])
    plain = PLAIN[name](data.num_features)
    if name == "lda":
        plain.num_data = len(data.train)
    optimizer = torch.optim.Adam(plain.parameters(), lr=plain.lr, betas=plain.betas)
    dense = torch.from_numpy(data.train.counts.toarray().astype(np.float32))
    generator = torch.Generator().manual_seed(0)
    rates = {(who, clock): [] for who in ("engine", "plain") for clock in ("wall", "cpu")}
    ratios = {"wall": [], "cpu": []}
    for round_ in range(rounds + 1):  # round 0 warms both up and is not counted
        engine = engine_epoch(model, guide, data, round_)
        peer = plain_epoch(plain, optimizer, dense, generator)
        if round_ == 0:
            continue
        for i, clock in enumerate(("wall", "cpu")):
            rates["engine", clock].append(engine[i])
            rates["plain", clock].append(peer[i])
            ratios[clock].append(engine[i] / peer[i])
    config = model.default_train_config
    out = {"model": name, "guide": guide.registry_name,
           "objective": config.get("objective", "trace"), "batch_size": config["batch_size"]}
    for (who, clock), values in rates.items():
        out[f"{who}_docs_per_{clock}_s"] = statistics.median(values)
    for clock, values in ratios.items():
        out[f"ratio_{clock}"] = statistics.median(values)
        out[f"ratio_{clock}_range"] = [min(values), max(values)]
    return out


# --------------------------------------------------------------------- the whole-run pair
def plain_run(epochs: int, out: Path) -> dict:
    """The plain script: what a researcher writes instead of ``zoo train prodlda``."""
    from zoo import metrics

    start = time.perf_counter()
    torch.manual_seed(0)
    data = zoo_data.load("20news")
    dense = torch.from_numpy(data.train.counts.toarray().astype(np.float32))
    module = PlainProdLDA(data.num_features)
    optimizer = torch.optim.Adam(module.parameters(), lr=module.lr, betas=module.betas)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        plain_epoch(module, optimizer, dense, generator)
    module.eval()
    test = torch.from_numpy(data.test.counts.toarray().astype(np.float32))
    with torch.no_grad():  # 8 samples per document, the bound without the coefficient
        bounds = torch.stack([module.elbo(test) for _ in range(8)]).mean(0)
        rows = module.beta.weight.T
        norm = module.logit_norm
        beta = torch.softmax((rows - norm.running_mean) / (norm.running_var + norm.eps).sqrt(),
                             -1)
    result = {"perplexity": metrics.perplexity(bounds, test.sum(-1)),
              "npmi": metrics.npmi(beta, data, top_n=10).mean,
              "diversity": metrics.topic_diversity(beta, top_k=25)}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), out / "model.pt")
    (out / "summary.json").write_text(json.dumps(result))
    result["seconds"] = time.perf_counter() - start
    return result


def zoo_phases(epochs: int, out: Path) -> dict:
    """``zoo train``'s steps, timed one by one in this process (wall seconds)."""
    from zoo import cli, plots
    from zoo.topics import topic_word

    times, start = {}, time.perf_counter()
    pyro.set_rng_seed(0)
    data = zoo_data.load("20news")
    model, guide = build("prodlda", None, data, {})
    config = TrainConfig(**{**model.default_train_config, "epochs": epochs, "validate": False})
    times["data and build"] = time.perf_counter() - start
    history = fit(model, guide, data, config, out_dir=out, progress=False,
                  extra_metrics=cli.per_epoch_metrics)
    times["fit"] = time.perf_counter() - start - sum(times.values())
    times["of which training passes"] = sum(h["seconds"] for h in history)
    mark = time.perf_counter()
    cli.final_summary(model, guide, data, history, config)
    times["final summary"] = time.perf_counter() - mark
    mark = time.perf_counter()
    plots.plot_training_curves(history, path=out / "training_curves.png")
    times["training-curves figure"] = time.perf_counter() - mark
    mark = time.perf_counter()
    plots.plot_topic_top_words(topic_word(model, guide), data.meta["vocab"],
                               path=out / "topics.png")
    times["topics figure"] = time.perf_counter() - mark
    plots.plt.close("all")
    return times


def whole_runs(epochs: int, rounds: int) -> dict:
    here = Path(__file__).resolve()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    zoo_cmd = [sys.executable, "-m", "zoo.cli", "train", "prodlda", "--data", "20news",
               "--epochs", str(epochs), "--quiet", "--threads", "1"]
    walls = {"zoo": [], "plain": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for who in ("zoo", "plain"):
                out = Path(tmp) / f"{who}{round_}"
                cmd = (zoo_cmd + ["--out", str(out)] if who == "zoo" else
                       [sys.executable, str(here), "--plain-run", str(epochs), "--out", str(out)])
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env=env,
                               cwd=here.parents[1])
                walls[who].append(time.perf_counter() - start)
        phases = zoo_phases(epochs, Path(tmp) / "phases")
    ratios = [z / p for z, p in zip(walls["zoo"], walls["plain"])]
    return {"epochs": epochs, "zoo_train_wall_s": walls["zoo"], "plain_wall_s": walls["plain"],
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "zoo_phases_wall_s": phases}


# -------------------------------------------------------------------------------- main
def synthetic_corpus(num_docs=600, vocab=300, seed=0) -> Dataset:
    """A small random corpus for ``--quick`` (the timings mean nothing; the code runs)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.1, size=(num_docs, vocab)) + (rng.random((num_docs, vocab)) < 0.01)
    split = int(0.8 * num_docs)
    return Dataset("synthetic", SparseCountsSplit(counts[:split]),
                   SparseCountsSplit(counts[split:]), "text",
                   {"vocab": [f"w{i}" for i in range(vocab)]})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(PLAIN), choices=list(PLAIN))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--whole-run", type=int, metavar="EPOCHS",
                        help="also time a whole `zoo train prodlda` against the plain script")
    parser.add_argument("--whole-rounds", type=int, default=3)
    parser.add_argument("--plain-run", type=int, metavar="EPOCHS", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="folder for results.json and results.md")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    pyro.settings.set(module_local_params=True)
    if args.plain_run is not None:
        print(json.dumps(plain_run(args.plain_run, Path(args.out))))
        return None
    if args.quick:
        data, args.rounds, args.whole_run = synthetic_corpus(), 1, None
    else:
        try:
            data = zoo_data.load("20news")
        except ValueError as e:
            print(f"skipped: 20 Newsgroups is not available ({e})")
            return None
    results = {}
    for name in args.models:
        results[name] = throughput(name, data, args.rounds)
        print(json.dumps(results[name]), file=sys.stderr, flush=True)
    report = {
        "benchmark": "topic_throughput", "data": f"{data}", "num_topics": K,
        "rounds": args.rounds, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "pyro": pyro.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "load_average_1min": os.getloadavg()[0], "results": results,
    }
    rows = ["| model (guide, objective, batch) | engine docs / CPU s | hand-written docs / CPU s "
            "| engine / hand-written, CPU (wall) |", "|---|---|---|---|"]
    for r in results.values():
        rows.append(f"| {r['model']} ({r['guide']}, {r['objective']}, {r['batch_size']}) | "
                    f"{r['engine_docs_per_cpu_s']:.0f} | {r['plain_docs_per_cpu_s']:.0f} | "
                    f"**{r['ratio_cpu']:.2f}** ({r['ratio_wall']:.2f}) |")
    if args.whole_run:
        report["whole_run"] = whole = whole_runs(args.whole_run, args.whole_rounds)
        print(json.dumps(whole), file=sys.stderr, flush=True)
        rows += ["", f"| whole run, {whole['epochs']} epochs | `zoo train` wall s | plain script "
                 "wall s | ratio |", "|---|---|---|---|",
                 f"| ProdLDA | {statistics.median(whole['zoo_train_wall_s']):.1f} | "
                 f"{statistics.median(whole['plain_wall_s']):.1f} | "
                 f"**{whole['ratio_median']:.2f}** |"]
        rows += ["", "| `zoo train` phase | wall s |", "|---|---|"]
        rows += [f"| {k} | {v:.2f} |" for k, v in whole["zoo_phases_wall_s"].items()]
    return write_report(report, "\n".join(rows), args.out)


if __name__ == "__main__":
    main()
