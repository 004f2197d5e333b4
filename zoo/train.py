r"""The training engine: one loop for every model, guide and objective, nested VI included.

It follows the modern Pyro pattern: with ``pyro.settings.set(module_local_params=True)`` the
parameters live in the model and guide modules (no global param store), ``objective(model,
guide)`` is an ``nn.Module`` whose forward is the loss, and a plain ``torch.optim.Adam`` steps it::

    loss_fn = get_objective("trace")(model, guide)        # nn.Module
    loss = loss_fn(x, num_data=N) / N                       # negative ELBO per data point
    loss.backward(); optimizer.step()

What the loop adds around those lines, for every *task* it trains (:class:`VariationalTask`:
a model and guide on a dataset, :func:`fit`; :class:`NestedTask`: a nested-VI sampler,
:func:`fit_nested`):

- seeded minibatches (one ``torch.Generator`` for shuffling and dynamic binarization, Pyro's
  global RNG for the latent draws), gradient clipping where asked;
- schedules for anything annealed (KL warm-up, CTM's prior warm-up), evaluated before every
  step (:mod:`zoo.schedules`);
- a tqdm bar with the loss and the rate on a terminal, one line per epoch elsewhere (a log, CI,
  ``nohup``), nothing when asked to be quiet;
- held-out metrics every ``eval_every`` epochs and after the last, appended to
  ``metrics.jsonl``; a training-seconds budget (``max_seconds``);
- a checkpoint of the initial state and after every epoch, written atomically (:mod:`zoo.runs`)
  with the task's modules, optimizer, epoch, history, schedule clock and every RNG state, so
  ``resume=True`` continues exactly: two epochs in one go equal one epoch, a resume and one
  more, bit for bit (a learning rate passed on resume replaces the checkpoint's);
- a :class:`TrainingDiverged` error on a non-finite loss (naming the epoch and step) or
  non-finite parameters after an epoch (naming the parameter), which leaves the last good
  checkpoint untouched, and a :class:`TrainingInterrupted` on Ctrl-C that says which epoch the
  checkpoint holds;
- ``device="auto"|"cpu"|"cuda[:N]"``: the training split is held on the device when it can be
  (:meth:`zoo.data.dataset.Split.to`), binarized there from a generator on that device, and on a
  GPU the loss is read back every few steps, not every step; under ``torchrun``, PyTorch's
  ``DistributedDataParallel`` around the loss module with the data sharded by
  ``DistributedSampler``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyro
import torch
from torch import nn
from tqdm import tqdm

from zoo import runs
from zoo.evaluation import heldout_elbo
from zoo.infer.objectives import get_objective, training_loss
from zoo.models.base import like_module
from zoo.poutine.latent_scale_messenger import scale_latents
from zoo.runs import CHECKPOINT, METRICS  # noqa: F401  (re-exported: the run folder's names)
from zoo.schedules import KL_WEIGHT, LinearWarmup, Progress


class TrainingDiverged(FloatingPointError):
    """The loss or a parameter became NaN or infinite; the last good checkpoint (if any) is
    kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``epoch`` is the last epoch saved in ``checkpoint`` (0: the
    initial state; ``checkpoint`` is None when no run folder was written)."""

    def __init__(self, epoch: int, checkpoint):
        super().__init__(f"stopped during epoch {epoch + 1}; the checkpoint holds epoch {epoch}")
        self.epoch, self.checkpoint = epoch, checkpoint


#: steps between reads of the loss on the host (each read waits for the device)
SYNC_EVERY = {"cpu": 1, "cuda": 25}


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
    #: linearly from 0 to 1 over this many epochs, step by step (the ``kl_weight`` schedule,
    #: :mod:`zoo.schedules`); 0 for the plain objective. Held-out figures stay unweighted.
    kl_warmup: float = 0.0
    #: held-out metrics after every this many epochs, and always after the last one
    eval_every: int = 1
    #: stop after the epoch in which the training seconds (evaluation excluded) reach this
    #: budget; None: train all ``epochs``
    max_seconds: float | None = None

    def check(self) -> TrainConfig:
        """Refuse values that cannot train (a ``ValueError`` naming the field); returns self."""
        def count(name, minimum=1):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")

        def positive(name, allow_none=False, strict=True):
            value = getattr(self, name)
            if value is None and allow_none:
                return
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value) and (value > 0 if strict else value >= 0))
            if not ok:
                what = "a finite number " + ("> 0" if strict else ">= 0")
                raise ValueError(f"{name} must be {what}{' or None' if allow_none else ''}, "
                                 f"got {value!r}.")

        for name in ("num_particles", "epochs", "batch_size", "eval_batch_size",
                     "eval_particles", "eval_every"):
            count(name)
        count("seed", minimum=0)
        positive("lr")
        positive("clip_norm", allow_none=True)
        positive("max_seconds", allow_none=True)
        if not (isinstance(self.kl_warmup, (int, float)) and self.kl_warmup >= 0):  # NaN too
            raise ValueError(f"kl_warmup is a number of epochs >= 0 (0: no warm-up), got "
                             f"{self.kl_warmup!r}.")
        betas = tuple(self.betas) if isinstance(self.betas, (list, tuple)) else ()
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1
                                      for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}.")
        if not isinstance(self.objective_options, dict):
            raise ValueError(f"objective_options must be a dict, got {self.objective_options!r}.")
        resolve_device(self.device)
        return self


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) at once, as ``pyro.set_rng_seed`` does."""
    pyro.set_rng_seed(seed)


def resolve_device(device) -> torch.device:
    """``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"`` or
    ``"cuda:N"`` as a ``torch.device``; anything else is refused with the names it takes."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    index = device[5:] if isinstance(device, str) and device.startswith("cuda:") else None
    if device != "cuda" and not (index is not None and index.isdigit()):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")
    if not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device.")
    if index is not None and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} was asked for, but torch sees "
                         f"{torch.cuda.device_count()} CUDA device(s): cuda:0 .. "
                         f"cuda:{torch.cuda.device_count() - 1}.")
    return torch.device(device)


def make_adam(params, config: TrainConfig) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused into one kernel per step where PyTorch has that kernel (float
    parameters on CPU or CUDA): the same update, a third of the time of the default per-tensor
    loop on a small VAE (0.5 vs 1.7 ms per step, ``benchmarks/train_throughput.py``)."""
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=config.lr, betas=tuple(config.betas), fused=fused or None)


def _distributed() -> tuple[int, int]:
    """(rank, world_size); initializes the process group when launched by ``torchrun``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world_size


def _first_line(error: Exception) -> str:
    """Pyro wraps a site's error as "Error while computing log_prob at site 'x':\n<cause>"."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    cause = [line for line in lines if line.startswith("Expected parameter")]
    return (cause or lines)[0]


# ----------------------------------------------------------------------------------- tasks
class VariationalTask:
    """A model and guide trained on ``data.train`` with a Pyro objective: what :func:`fit`
    hands the loop. A step is ``loss_fn(x, num_data=N) / N``, an epoch a seeded pass over the
    training split, the evaluation the held-out ELBO (plus ``extra_metrics``)."""

    def __init__(self, model, guide, data, config: TrainConfig, device, rank=0, world_size=1,
                 extra_metrics=None):
        self.model, self.guide, self.data = model, guide, data
        self.config, self.device = config, device
        self.rank, self.world_size = rank, world_size
        self.extra_metrics = extra_metrics
        self.num_data = len(data.train)
        # The training split held on the device; batches binarize there, from a generator on
        # that device when it is not the CPU (seeded like the CPU one, saved in checkpoints).
        self.train_split = data.train.to(device)
        self.device_generator = (None if device.type == "cpu" else
                                 torch.Generator(device).manual_seed(config.seed + rank))

        elbo = get_objective(
            config.objective,
            num_particles=config.num_particles,
            max_plate_nesting=model.max_plate_nesting,
            **config.objective_options,
        )
        # the guide's training algorithm around the objective, where it declares one
        self.loss_fn = training_loss(elbo, model, guide).to(device)
        self.train_module = self.loss_fn
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_module = DistributedDataParallel(self.loss_fn)
        self.backward_inside = False

    def annealed_modules(self):
        """The modules whose annealed quantities the schedules set: model and guide."""
        return (self.model, self.guide)

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint stores: model, guide, and the loss module's own state (natural
        steps' pools)."""
        extras = nn.ModuleDict({name: child for name, child in self.loss_fn.named_children()
                                if name not in ("model", "guide") and child is not None})
        return {"model": self.model, "guide": self.guide, "objective": extras}

    def parameters(self) -> list:
        """The parameters the optimizer steps, each once."""
        # Model and guide share no parameters, but a user-built pair might; dedupe to be safe.
        return list({id(p): p for p in self.loss_fn.parameters()}.values())

    def batches(self, epoch: int, generator: torch.Generator) -> list:
        """Index batches for one epoch: a seeded permutation, sharded across processes."""
        n = self.num_data
        if self.world_size == 1:
            perm = torch.randperm(n, generator=generator)
        else:
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(range(n), self.world_size, self.rank, shuffle=True,
                                         seed=self.config.seed)
            sampler.set_epoch(epoch)
            perm = torch.tensor(list(sampler))
        return list(perm.split(self.config.batch_size))

    def named_parameters(self):
        """The loss module's named parameters (model and guide)."""
        return self.loss_fn.named_parameters()

    def named_buffers(self):
        """The loss module's named buffers (running statistics, natural-step state, ...)."""
        return self.loss_fn.named_buffers()

    def step(self, index: torch.Tensor, generator: torch.Generator):
        """``(loss per data point, data points)`` of one batch."""
        x = self.train_split.batch(index, self.device_generator or generator)
        x = like_module(x, self.model)  # a no-op for a split held on the device
        return self.train_module(x, num_data=self.num_data) / self.num_data, len(index)

    def train(self):
        """Put the loss module (model and guide) in training mode."""
        self.loss_fn.train()

    def evaluate(self) -> dict:
        """The held-out ELBO of the test split, and the extra metrics when given."""
        self.model.eval()
        self.guide.eval()
        record = {"heldout_elbo": heldout_elbo(
            self.model, self.guide, self.data.test, batch_size=self.config.eval_batch_size,
            num_particles=self.config.eval_particles)}
        if self.extra_metrics is not None:
            record.update(self.extra_metrics(self.model, self.guide, self.data))
        return record


class NestedTask:
    """A nested-VI sampler (:class:`~zoo.infer.nested_programs.NestedPrograms`) trained by a
    :class:`~zoo.infer.nested.NestedObjective`: what :func:`fit_nested` hands the loop. A step is
    one sweep of ``num_particles`` particles; an "epoch" is ``eval_every`` sweeps, after which
    :math:`\\log\\hat Z` and the ESS are estimated; data points count particles."""

    def __init__(self, programs, objective, num_particles: int, iterations: int,
                 eval_every: int, eval_particles: int, eval_batches: int, device,
                 world_size: int = 1):
        self.programs, self.objective, self.device = programs.to(device), objective, device
        self.num_particles, self.iterations, self.eval_every = num_particles, iterations, eval_every
        self.eval_particles, self.eval_batches = eval_particles, eval_batches
        self.num_data = num_particles * eval_every  # one "epoch" of particles
        self.train_module = NestedLoss(programs, objective, num_particles, world_size == 1)
        if world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.train_module = DistributedDataParallel(self.train_module)
        # Alone, the sweep back-propagates level by level (memory O(S), not O(SK)); under
        # DistributedDataParallel the engine backpropagates, so gradients are all-reduced.
        self.backward_inside = world_size == 1
        self.device_generator = None
        self.done = 0

    def annealed_modules(self):
        """None: nested VI anneals through its own schedule."""
        return ()

    def named_parameters(self):
        """The programs' named parameters."""
        return self.programs.named_parameters()

    def named_buffers(self):
        """The programs' named buffers."""
        return self.programs.named_buffers()

    def modules(self) -> dict[str, nn.Module]:
        """What a checkpoint stores: the sampler's programs."""
        return {"programs": self.programs}

    def parameters(self) -> list:
        """The parameters the optimizer steps."""
        return list(self.programs.parameters())

    def batches(self, epoch: int, generator) -> list:
        """One epoch's steps: ``eval_every`` sweeps (fewer at the end)."""
        return [None] * min(self.eval_every, self.iterations - epoch * self.eval_every)

    def step(self, _, generator):
        """One sweep: the loss module and the number of particles it counts."""
        return self.train_module(), self.num_particles

    def train(self):
        """Put the programs in training mode."""
        self.programs.train()

    def evaluate(self) -> dict:
        """log Z-hat and the ESS of the sampler as it is, and its schedule."""
        from zoo.infer.nested import evaluate_nested

        self.programs.eval()
        return {"iteration": self.done,
                **evaluate_nested(self.programs, self.objective, self.eval_particles,
                                  self.eval_batches),
                "betas": self.programs.schedule().tolist()}


class NestedLoss(nn.Module):
    """One sweep's loss as a module (what DistributedDataParallel wraps)."""

    def __init__(self, programs, objective, num_particles: int, backward: bool):
        super().__init__()
        self.programs, self.objective = programs, objective
        self.num_particles, self.backward = num_particles, backward

    def forward(self):
        """One sweep of the nested objective over ``num_particles`` particles; its loss."""
        return self.objective(self.programs, self.num_particles, backward=self.backward).loss


# ----------------------------------------------------------------------------------- fit
class SingleStepEpochs(UserWarning):
    """Every epoch is one optimizer step: the training split is no larger than a batch."""


def warn_single_step_epochs(num_data: int, batch_size: int) -> None:
    """Warn when ``num_data`` points at ``batch_size`` make one step an epoch: epochs tuned on a
    large corpus (160 documents at batch 200: 250 epochs are 250 steps, not 7,500) then train
    far less than they say."""
    if num_data <= batch_size:
        suggestion = max(1, num_data // 10)
        warnings.warn(
            f"{num_data} training points at batch size {batch_size}: every epoch is a single "
            f"optimizer step, so the epochs train far less than on a larger data set; a "
            f"smaller batch size (e.g. {suggestion}: {math.ceil(num_data / suggestion)} steps "
            f"an epoch) or more epochs", SingleStepEpochs, stacklevel=3)


def fit(model, guide, data, config: TrainConfig | None = None, *, out_dir=None, resume=False,
        progress=None, extra_metrics=None, schedules=None, check=None,
        **overrides) -> list[dict]:
    """Train ``guide`` (and ``model``'s parameters) on ``data.train``; return the history.

    :param data: a :class:`~zoo.data.dataset.Dataset`
    :param config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields
    :param out_dir: run folder for ``checkpoint.pt`` and ``metrics.jsonl`` (None: keep nothing)
    :param bool resume: continue from ``out_dir/checkpoint.pt`` (exactly, RNG states included)
    :param progress: show a progress bar; None means "when stderr is a terminal"
    :param extra_metrics: ``f(model, guide, data) -> dict`` evaluated after every epoch
    :param dict schedules: ``{name: schedule}`` on top of the model's and guide's
        ``default_schedules()`` and of ``kl_warmup`` (:mod:`zoo.schedules`)
    :param check: ``f(record) -> str | None``, called with every epoch's record before its
        checkpoint is written; a returned reason stops the run as diverged, with the previous
        checkpoint kept (``zoo train`` passes :class:`zoo.divergence.DivergenceGuard`)
    :returns: one dict per epoch: ``epoch``, ``train_loss``, ``heldout_elbo``, ``seconds`` and
        ``cpu_seconds`` of the training pass, ``points_per_second``, the last value of every
        schedule, ...
    """
    names = [f.name for f in fields(TrainConfig)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"fit() got unknown training option(s) {', '.join(unknown)}; the "
                         f"options are TrainConfig's: {', '.join(names)}.")
    config = TrainConfig(**{**asdict(config or TrainConfig()), **overrides}).check()
    model.check_data(data)
    warn_single_step_epochs(len(data.train), config.batch_size)
    device = resolve_device(config.device)
    rank, world_size = _distributed()
    set_seed(config.seed + rank)
    generator = torch.Generator().manual_seed(config.seed + rank)
    model.to(device)
    guide.to(device)
    task = VariationalTask(model, guide, data, config, device, rank, world_size, extra_metrics)
    all_schedules = {**model.default_schedules(), **guide.default_schedules()}
    if config.kl_warmup > 0:
        all_schedules[KL_WEIGHT] = LinearWarmup(epochs=config.kl_warmup)
    all_schedules.update(schedules or {})
    validation = (contextlib.nullcontext() if config.validate is None
                  else pyro.validation_enabled(config.validate))
    with validation:
        return train(task, config, generator, out_dir=out_dir, resume=resume, progress=progress,
                     schedules=all_schedules, rank=rank, check=check)


def fit_nested(programs, objective, *, num_particles: int, iterations: int, eval_every: int,
               eval_particles: int = 100, eval_batches: int = 100, lr: float = 1e-3,
               seed: int = 0, device: str = "auto", max_seconds: float | None = None,
               out_dir=None, resume=False, progress=None,
               train_config: dict | None = None) -> list[dict]:
    """Train a nested-VI sampler with the engine; returns the history, one record per
    ``eval_every`` iterations (``iteration``, ``log_z``, ``ess_percent``, ``betas``, ...);
    with ``max_seconds`` it stops at the first evaluation past that many training seconds.

    ``train_config`` is stored in the checkpoint beside the engine's own settings (the run's
    ``config.json`` for ``zoo nvi``)."""
    if iterations < 1 or eval_every < 1:
        raise ValueError(f"iterations and eval_every must be positive, got {iterations} and "
                         f"{eval_every}.")
    config = TrainConfig(objective=objective.divergence, num_particles=num_particles,
                         epochs=math.ceil(iterations / eval_every), lr=lr, seed=seed,
                         device=device, eval_particles=eval_particles, max_seconds=max_seconds)
    rank, world_size = _distributed()
    set_seed(seed + rank)
    task = NestedTask(programs, objective, num_particles, iterations, eval_every,
                      eval_particles, eval_batches, resolve_device(device), world_size)
    return train(task, config, torch.Generator().manual_seed(seed + rank), out_dir=out_dir,
                 resume=resume, progress=progress, rank=rank, extra_state=train_config)


# ------------------------------------------------------------------------------- the loop
def _diverged(what: str, out_dir, saved_epoch: int) -> str:
    if out_dir is None:
        return f"{what}. Nothing was saved (no out_dir). Lower the learning rate, or set clip_norm."
    state = "the initial state" if saved_epoch == 0 else f"epoch {saved_epoch}"
    return (f"{what}. The last good checkpoint is kept ({out_dir / CHECKPOINT}, {state}). "
            "Lower the learning rate, or set clip_norm.")


def train(task, config: TrainConfig, generator: torch.Generator, *, out_dir=None, resume=False,
          progress=None, schedules=None, rank: int = 0, extra_state=None,
          check=None) -> list[dict]:
    """The loop every task runs (see the module docstring); returns the history."""
    out_dir = Path(out_dir) if out_dir is not None else None
    writer = rank == 0 and out_dir is not None
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
    schedules = schedules or {}
    params = task.parameters()
    optimizer = make_adam(params, config)

    history: list[dict] = []
    start_epoch, clock = 0, {"step": 0, "points": 0, "seconds": 0.0}
    if resume:
        if out_dir is None:
            raise ValueError("resume=True needs out_dir, the run folder to resume from.")
        ckpt = runs.load_checkpoint(out_dir / CHECKPOINT, map_location=task.device)
        for name, module in task.modules().items():
            module.load_state_dict(ckpt[name])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the settings passed now, not the saved ones
            group["lr"], group["betas"] = config.lr, tuple(config.betas)
        history = ckpt["history"]
        start_epoch = ckpt["epoch"]
        clock = dict(ckpt.get("clock", clock))
        runs.set_rng_state(ckpt["rng"], generator, data_device=task.device_generator)
        if writer:  # metrics.jsonl may hold epochs past the checkpoint if a run was killed
            runs.rewrite_metrics(out_dir, history)
    elif writer and (out_dir / METRICS).exists():
        (out_dir / METRICS).unlink()
    task.done = clock["step"]

    def save(epoch: int):
        checkpoint = {
            **{name: module.state_dict() for name, module in task.modules().items()},
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "history": history,
            "clock": dict(clock),
            "rng": runs.rng_state(generator, data_device=task.device_generator),
            "train_config": asdict(config),
        }
        if extra_state is not None:
            checkpoint["config"] = extra_state
        runs.atomic_save(checkpoint, out_dir / CHECKPOINT)

    if writer and not resume:
        save(0)  # the initial state: a run that diverges in epoch 1 can resume with a lower lr
    saved = start_epoch
    tty = sys.stderr.isatty() if progress is None else progress
    bar, lines = tty and rank == 0, progress is not False and rank == 0
    for epoch in range(start_epoch, config.epochs):
        if out_of_time(config, clock):
            break
        try:
            record, last = _epoch(task, params, optimizer, generator, config, epoch, bar,
                                  out_dir, schedules, clock, saved, check)
        except KeyboardInterrupt:  # anywhere in the epoch: training, evaluation, checkpoint
            raise TrainingInterrupted(saved, out_dir / CHECKPOINT if writer else None) from None
        history.append(record)
        if writer:
            save(epoch + 1)  # first the checkpoint, then the log
            runs.append_metrics(out_dir, record)
            saved = epoch + 1
        if lines:
            shown = "".join(f"  {label} {record[key]:.3f}" for key, label in (
                ("heldout_elbo", "held-out ELBO"), ("log_z", "log Z-hat")) if key in record)
            line = (f"epoch {epoch + 1:3d}/{config.epochs}  train loss "
                    f"{record['train_loss']:.3f}{shown}  {record['seconds']:.1f}s")
            tqdm.write(line) if bar else print(line, file=sys.stderr, flush=True)
        if last:
            break
    return history


def _epoch(task, params, optimizer, generator, config, epoch, bar, out_dir, schedules, clock,
           saved, check):
    """Train, check and evaluate one epoch: ``(record, whether it is the run's last)``."""
    batches = task.batches(epoch, generator)
    train_loss, seen, seconds, cpu_seconds, values = _train_epoch(
        task, params, optimizer, batches, generator, config, epoch + 1, bar, out_dir,
        schedules, clock, saved)
    task.done = clock["step"]
    _check_state(task, epoch + 1, out_dir, saved)
    last = epoch + 1 == config.epochs or out_of_time(config, clock)
    record = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        **(task.evaluate() if last or (epoch + 1) % config.eval_every == 0 else {}),
        "seconds": seconds,
        # CPU time is what other processes on shared cores cannot inflate (single thread)
        "cpu_seconds": cpu_seconds,
        "points_per_second": seen / seconds,
        **values,  # the last value of every schedule (train_loss is then the weighted one)
    }
    reason = check(record) if check is not None else None
    if reason:
        raise TrainingDiverged(_diverged(reason, out_dir, saved))
    return record, last


def _check_state(task, epoch: int, out_dir, saved: int) -> None:
    """Non-finite gradients reach the parameters through the optimizer, and running statistics
    (BatchNorm's) the buffers: check both once an epoch (one read per tensor)."""
    for kind, named in (("parameter", task.named_parameters()), ("buffer", task.named_buffers())):
        for name, tensor in named:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise TrainingDiverged(_diverged(
                    f"{kind} {name} is not finite after epoch {epoch}", out_dir, saved))


def out_of_time(config: TrainConfig, clock: dict) -> bool:
    """Whether the run has spent its ``max_seconds`` of training."""
    return config.max_seconds is not None and clock["seconds"] >= config.max_seconds


def _train_epoch(task, params, optimizer, batches, generator, config: TrainConfig, epoch: int,
                 show: bool, out_dir, schedules: dict, clock: dict, saved: int):
    """One pass over ``batches``; returns (mean loss per data point, points seen, seconds,
    CPU seconds of this process, the schedules' last values); advances ``clock``.

    The losses are read back on the host every ``SYNC_EVERY[device]`` steps (every step on the
    CPU, where reading costs nothing, so a non-finite loss stops the run before the optimizer
    takes its step; on a GPU a few steps later, the checkpoint on disk untouched either way)."""
    task.train()
    bar = tqdm(total=task.num_data, disable=not show, unit="pt", leave=False,
               desc=f"epoch {epoch}/{config.epochs}")
    start, cpu_start, total_loss, seen = time.perf_counter(), time.process_time(), 0.0, 0
    seconds_before, values = clock["seconds"], {}
    sync_every = SYNC_EVERY.get(task.device.type, 1)
    pending: list[tuple[int, torch.Tensor, int]] = []  # (step, loss, points) not yet read
    norms: list[tuple[int, torch.Tensor]] = []  # (step, gradient norm) not yet read

    def read_norms():
        for (step, _), value in zip(norms, torch.stack([n for _, n in norms]).tolist()):
            if not math.isfinite(value):
                bar.close()
                raise TrainingDiverged(_diverged(
                    f"the gradient norm became {value} at epoch {epoch}, step {step + 1}",
                    out_dir, saved))
        norms.clear()

    def read_back():
        nonlocal total_loss, seen
        losses = torch.stack([loss for _, loss, _ in pending]).tolist()
        for (step, _, points), value in zip(pending, losses):
            if not math.isfinite(value):
                bar.close()
                raise TrainingDiverged(_diverged(
                    f"Loss became {value} at epoch {epoch}, step {step + 1}", out_dir, saved))
            total_loss += value * points
            seen += points
            bar.update(points)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        pending.clear()

    for step, index in enumerate(batches):
        clock["step"] += 1
        now = Progress(step=clock["step"], steps_per_epoch=len(batches),
                       epoch=clock["points"] / task.num_data,
                       seconds=seconds_before + time.perf_counter() - start)
        values = {name: schedule(now) for name, schedule in schedules.items()}
        for name, value in values.items():
            for module in task.annealed_modules():
                if name in module.annealed:
                    module.set_annealed(name, value)
        beta = values.get(KL_WEIGHT, 1.0)
        try:
            with scale_latents(scale=beta) if beta < 1 else contextlib.nullcontext():
                loss, points = task.step(index, generator)  # -ELBO per data point
        except ValueError as e:
            # With validation on, non-finite weights surface as an invalid distribution
            # parameter before the loss itself turns NaN; it is the same divergence.
            if "Expected parameter" not in str(e):  # e.g. data outside the support: not ours
                raise
            bar.close()
            raise TrainingDiverged(_diverged(
                f"non-finite parameters at epoch {epoch}, step {step + 1} "
                f"({_first_line(e)})", out_dir, saved)) from e
        pending.append((step, loss.detach(), points))
        if len(pending) >= sync_every:
            read_back()
        if not task.backward_inside:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if config.clip_norm is not None:  # the norm is computed anyway: check it
            norms.append((step, torch.nn.utils.clip_grad_norm_(params, config.clip_norm)))
            if len(norms) >= sync_every:
                read_norms()
        optimizer.step()
        if task.backward_inside:
            optimizer.zero_grad(set_to_none=True)
        clock["points"] += points
    if pending:
        read_back()
    if norms:
        read_norms()
    bar.close()
    if task.device.type == "cuda":  # the last steps' kernels inside the epoch's clock
        torch.cuda.synchronize(task.device)
    seconds = time.perf_counter() - start
    clock["seconds"] = seconds_before + seconds
    return total_loss / seen, seen, seconds, time.process_time() - cpu_start, values
