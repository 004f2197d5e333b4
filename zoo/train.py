r"""The training engine: one loop for every model, guide and objective.

It follows the modern Pyro pattern: with ``pyro.settings.set(module_local_params=True)`` the
parameters live in the model and guide modules (no global param store), ``objective(model,
guide)`` is an ``nn.Module`` whose forward is the loss, and a plain ``torch.optim.Adam`` steps it::

    loss_fn = get_objective("trace")(model, guide)        # nn.Module
    loss = loss_fn(x, num_data=N) / N                       # negative ELBO per data point
    loss.backward(); optimizer.step()

What the loop adds around those lines:

- seeded minibatches (one ``torch.Generator`` for shuffling and dynamic binarization, Pyro's
  global RNG for the latent draws), gradient clipping where asked;
- a tqdm bar with the loss and the rate, quiet when asked or when stderr is not a terminal;
- held-out ELBO (and any extra metrics) after every epoch, appended to ``metrics.jsonl``;
- a checkpoint after every epoch, written atomically (temp file, then ``os.replace``) with model,
  guide, optimizer, epoch, history and every RNG state, so ``resume=True`` continues exactly: two
  epochs in one go equal one epoch, a resume and one more, bit for bit;
- a :class:`TrainingDiverged` error on a non-finite loss, naming the epoch and step, which leaves
  the last good checkpoint untouched;
- ``device="auto"|"cpu"|"cuda"``, and under ``torchrun`` PyTorch's ``DistributedDataParallel``
  around the loss module with the data sharded by ``DistributedSampler``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyro
import torch
from tqdm import tqdm

from zoo.evaluation import heldout_elbo
from zoo.infer.annealing import scale_latents
from zoo.infer.objectives import get_objective

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


@dataclass
class TrainConfig:
    """Everything that decides a training run besides the model, guide and data."""

    objective: str = "trace"  # a name from zoo.infer.list_objectives()
    num_particles: int = 1
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    clip_norm: float | None = None  # max global gradient norm, None for no clipping
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 1000
    eval_particles: int = 1
    objective_options: dict = field(default_factory=dict)
    #: Pyro's argument and shape checks while training (``pyro.validation_enabled``); None
    #: keeps the global setting. They cost 10-20 % of a small model's step, and ``meanfield``
    #: takes its lean path only with them off.
    validate: bool | None = None
    #: KL warm-up: every latent site's log-density (the KL term) weighted by beta rising
    #: linearly from 0 to 1 over this many epochs, step by step (Sønderby et al. 2016; see
    #: zoo.infer.annealing); 0 for the plain objective. Held-out figures stay unweighted.
    kl_warmup: float = 0.0


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) at once, as ``pyro.set_rng_seed`` does."""
    pyro.set_rng_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but torch sees no CUDA device.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``: a crash
    mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(text: str, path) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random stream a run draws from: Python, NumPy, torch (CPU, CUDA) and the data
    generator when there is one."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if generator is not None:
        state["data"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path, model=None, guide=None, map_location="cpu") -> dict:
    """Read a checkpoint and, when given, load its weights into ``model`` and ``guide``."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no checkpoint there (train first, or check the run folder).")
    # Our checkpoints hold RNG states (NumPy arrays, tuples), so weights_only=False; only load
    # checkpoints you wrote yourself.
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    if model is not None:
        model.load_state_dict(ckpt["model"])
    if guide is not None:
        guide.load_state_dict(ckpt["guide"])
    return ckpt


def _distributed() -> tuple[int, int]:
    """(rank, world_size); initializes the process group when launched by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size


def _epoch_batches(n, batch_size, generator, epoch, seed, rank, world_size):
    """Index batches for one epoch: a seeded permutation, sharded across processes."""
    if world_size == 1:
        perm = torch.randperm(n, generator=generator)
    else:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), world_size, rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        perm = torch.tensor(list(sampler))
    return perm.split(batch_size)


def make_adam(params, config: TrainConfig) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused into one kernel per step where PyTorch has that kernel (float
    parameters on CPU or CUDA): the same update, a third of the time of the default per-tensor
    loop on a small VAE (0.5 vs 1.7 ms per step, ``benchmarks/train_throughput.py``)."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas), fused=fused or None)


def kl_weight(config: TrainConfig, epoch: int, step: int, steps_per_epoch: int) -> float:
    r"""The warm-up weight :math:`\beta` of step ``step`` (0-based) of epoch ``epoch``
    (1-based): :math:`\min(1, (\text{steps done, this one included}) / (\text{kl\_warmup}
    \times \text{steps per epoch}))`, or 1 without warm-up."""
    if config.kl_warmup <= 0:
        return 1.0
    done = (epoch - 1) * steps_per_epoch + step + 1
    return min(1.0, done / (config.kl_warmup * steps_per_epoch))


def _first_line(error: Exception) -> str:
    """Pyro wraps a site's error as "Error while computing log_prob at site 'x':\n<cause>"."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    cause = [line for line in lines if line.startswith("Expected parameter")]
    return (cause or lines)[0]


def _diverged(what: str, out_dir) -> str:
    where = f"{out_dir / CHECKPOINT}" if out_dir is not None else "no out_dir was given"
    return (f"{what}. The last good checkpoint is kept ({where}). "
            "Lower the learning rate, or set clip_norm.")


def _train_epoch(train_module, params, optimizer, split, batches, generator, device,
                 config: TrainConfig, epoch: int, show: bool, out_dir):
    """One pass over ``batches``; returns (mean loss per data point, points seen, seconds,
    CPU seconds of this process, the KL weight of the last step)."""
    num_data = len(split)
    train_module.train()
    bar = tqdm(total=num_data, disable=not show, unit="pt", leave=False,
               desc=f"epoch {epoch}/{config.epochs}")
    start, cpu_start, total_loss, seen = time.perf_counter(), time.process_time(), 0.0, 0
    for step, index in enumerate(batches):
        x = split.batch(index, generator).to(device, non_blocking=True)
        beta = kl_weight(config, epoch, step, len(batches))
        try:
            with scale_latents(scale=beta) if beta < 1 else contextlib.nullcontext():
                loss = train_module(x, num_data=num_data) / num_data  # -ELBO per data point
        except ValueError as e:
            # With validation on, non-finite weights surface as an invalid distribution
            # parameter before the loss itself turns NaN; it is the same divergence.
            if "Expected parameter" not in str(e):  # e.g. data outside the support: not ours
                raise
            bar.close()
            raise TrainingDiverged(_diverged(
                f"non-finite parameters at epoch {epoch}, step {step + 1} "
                f"({_first_line(e)})", out_dir)) from e
        value = loss.item()
        if not math.isfinite(value):
            bar.close()
            raise TrainingDiverged(_diverged(
                f"Loss became {value} at epoch {epoch}, step {step + 1}", out_dir))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        optimizer.step()
        total_loss += value * len(index)
        seen += len(index)
        bar.update(len(index))
        bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    bar.close()
    return (total_loss / seen, seen, time.perf_counter() - start,
            time.process_time() - cpu_start, beta)


def fit(model, guide, data, config: TrainConfig | None = None, *, out_dir=None, resume=False,
        progress=None, extra_metrics=None, **overrides) -> list[dict]:
    """Train ``guide`` (and ``model``'s parameters) on ``data.train``; return the history.

    :param data: a :class:`~zoo.data.dataset.Dataset`
    :param config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields
    :param out_dir: run folder for ``checkpoint.pt`` and ``metrics.jsonl`` (None: keep nothing)
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (exactly, RNG states included)
    :param progress: show a progress bar; None means "when stderr is a terminal"
    :param extra_metrics: ``f(model, guide, data) -> dict`` evaluated after every epoch
    :returns: one dict per epoch: ``epoch``, ``train_loss``, ``heldout_elbo``, ``seconds`` and
        ``cpu_seconds`` of the training pass, ``points_per_second``, ...
    """
    config = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
    if not config.kl_warmup >= 0:  # also refuses NaN
        raise ValueError(f"kl_warmup is a number of epochs >= 0 (0: no warm-up), got "
                         f"{config.kl_warmup}.")
    device = resolve_device(config.device)
    rank, world_size = _distributed()
    out_dir = Path(out_dir) if out_dir is not None else None
    writer = rank == 0 and out_dir is not None
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)

    set_seed(config.seed + rank)
    generator = torch.Generator().manual_seed(config.seed + rank)
    model.to(device)
    guide.to(device)
    objective = get_objective(
        config.objective,
        num_particles=config.num_particles,
        max_plate_nesting=model.max_plate_nesting,
        **config.objective_options,
    )
    loss_fn = objective(model, guide)
    train_module = loss_fn
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_module = DistributedDataParallel(loss_fn)
    # Model and guide share no parameters, but a user-built pair might; dedupe to be safe.
    params = list({id(p): p for p in loss_fn.parameters()}.values())
    optimizer = make_adam(params, config)

    history: list[dict] = []
    start_epoch = 0
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the run folder to resume from.")
        ckpt = load_checkpoint(out_dir / CHECKPOINT, model, guide, map_location=device)
        optimizer.load_state_dict(ckpt["optimizer"])
        history = ckpt["history"]
        start_epoch = ckpt["epoch"]
        set_rng_state(ckpt["rng"], generator)
        if writer:  # metrics.jsonl may hold epochs past the checkpoint if a run was killed
            atomic_write_text("".join(json.dumps(h) + "\n" for h in history), out_dir / METRICS)

    show = (sys.stderr.isatty() if progress is None else progress) and rank == 0
    validation = (contextlib.nullcontext() if config.validate is None
                  else pyro.validation_enabled(config.validate))
    with validation:
        for epoch in range(start_epoch, config.epochs):
            batches = _epoch_batches(
                len(data.train), config.batch_size, generator, epoch, config.seed, rank, world_size
            )
            train_loss, seen, seconds, cpu_seconds, beta = _train_epoch(
                train_module, params, optimizer, data.train, batches, generator, device, config,
                epoch=epoch + 1, show=show, out_dir=out_dir,
            )
            model.eval()
            guide.eval()
            record = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "heldout_elbo": heldout_elbo(
                    model, guide, data.test, batch_size=config.eval_batch_size,
                    num_particles=config.eval_particles, device=device,
                ),
                "seconds": seconds,
                # CPU time is what other processes on shared cores cannot inflate (single thread)
                "cpu_seconds": cpu_seconds,
                "points_per_second": seen / seconds,
            }
            if config.kl_warmup > 0:
                record["kl_weight"] = beta  # train_loss is then the weighted objective's
            if extra_metrics is not None:
                record.update(extra_metrics(model, guide, data))
            history.append(record)
            if writer:
                checkpoint = {
                    "model": model.state_dict(),
                    "guide": guide.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "history": history,
                    "rng": rng_state(generator),
                    "train_config": asdict(config),
                }
                atomic_save(checkpoint, out_dir / CHECKPOINT)  # first the checkpoint, then the log
                with open(out_dir / METRICS, "a") as f:
                    f.write(json.dumps(record) + "\n")
            if show:
                tqdm.write(
                    f"epoch {epoch + 1:3d}  train loss {record['train_loss']:.3f}  "
                    f"held-out ELBO {record['heldout_elbo']:.3f}  {seconds:.1f}s"
                )
    return history
