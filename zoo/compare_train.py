r"""Training the cells of ``zoo compare`` in turns, and the progress of the whole comparison.

Every cell is a run folder trained by the engine, one epoch per turn:
``fit(model, guide, data, config, epochs=k + 1, resume=True, out_dir=cell)`` continues the
run exactly (optimizer, schedule clock and every RNG state come from the checkpoint), so the
turns change nothing in what a cell learns, only *when* it runs: the cell behind (fewest epochs,
or fewest training seconds under a budget) goes next, and any load from other processes on a
shared machine falls on all cells alike. A finished cell is never opened for writing again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyro
from tqdm import tqdm

from zoo import runs
from zoo.schedules import KL_WEIGHT, LinearWarmup
from zoo.train import TrainConfig, TrainingDiverged, fit

#: training settings a rerun may raise (the cell then trains on); any other change is refused
BUDGET_KEYS = ("epochs", "max_seconds")


@dataclass(frozen=True)
class ObjectiveSpec:
    """An objective by name and its number of particles: ``"iwae:5"`` is IWAE with K = 5."""

    name: str
    num_particles: int = 1

    @classmethod
    def parse(cls, spec) -> ObjectiveSpec:
        """An objective from ``NAME``, ``NAME:K`` or a ``(name, K)`` pair."""
        if isinstance(spec, ObjectiveSpec):
            return spec
        if isinstance(spec, (tuple, list)):
            return cls(str(spec[0]), int(spec[1]))
        name, _, k = str(spec).partition(":")
        if k and not (k.isdigit() and int(k) >= 1):
            raise ValueError(f"objective {spec!r}: write NAME or NAME:K with K particles >= 1 "
                             "(e.g. iwae:5).")
        return cls(name, int(k) if k else 1)

    @property
    def label(self) -> str:
        """The objective as written on the command line: ``iwae:5``."""
        return self.name + (f":{self.num_particles}" if self.num_particles > 1 else "")

    @property
    def folder(self) -> str:
        """The objective in a folder name: ``iwae_K5``."""
        return self.name + (f"_K{self.num_particles}" if self.num_particles > 1 else "")


@dataclass(eq=False)
class Cell:
    """One (model, guide, objective, seed) of a comparison and its run folder. ``config`` and
    ``dataset`` are set for cells the comparison trains, None for run folders read back."""

    model: str
    guide: str
    objective: ObjectiveSpec
    seed: int
    run: Path
    config: TrainConfig | None = None
    dataset: object = None
    data_spec: dict = field(default_factory=dict)
    model_options: dict = field(default_factory=dict)
    guide_options: dict = field(default_factory=dict)
    label: str = ""
    cell_id: str = ""

    def __post_init__(self):
        k = self.objective.num_particles
        self.label = self.label or (f"{self.model} · {self.guide} · {self.objective.name}"
                                    + (f" K={k}" if k > 1 else ""))

    @property
    def id(self) -> str:
        """The cell's name in the comparison and its run folder: ``model.guide.objective.seedN``
        unless given."""
        return self.cell_id or f"{self.model}.{self.guide}.{self.objective.folder}.seed{self.seed}"


class Bar:
    """The comparison's own progress: a tqdm bar on a terminal, a line now and then elsewhere
    (a log, ``nohup``), nothing when ``progress`` is False."""

    def __init__(self, total: float, unit: str, desc: str, progress=None, initial: float = 0):
        self.show = sys.stderr.isatty() if progress is None else bool(progress)
        self.lines = progress is None and not self.show
        self.total, self.done, self.initial, self.desc = total, initial, initial, desc
        self.start, self.last_line = time.perf_counter(), initial / total if total else 0.0
        self.bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=True,
                        disable=not self.show, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} "
                                   "[{elapsed}<{remaining}]{postfix}")

    def update(self, amount: float, message: str = "", force: bool = False) -> None:
        """Advance the bar by ``amount`` with ``message``; off a terminal, print a line every 10 %
        (or when ``force``)."""
        amount = min(amount, self.total - self.done)
        self.done += amount
        self.bar.update(amount)
        if message:
            self.bar.set_postfix_str(message)
        share = self.done / self.total if self.total else 1.0
        if self.lines and (force or share - self.last_line >= 0.1 or share >= 1):
            self.last_line = share
            elapsed = time.perf_counter() - self.start
            rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(f"{self.desc}: {share:.0%} [{_clock(elapsed)} elapsed, ETA {_clock(eta)}] "
                  f"{message}", file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        """Print ``text`` to stderr without breaking the bar."""
        if self.show:
            tqdm.write(text, file=sys.stderr)
        elif self.lines:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


def _clock(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


@dataclass(eq=False)
class _Turn:
    cell: Cell
    model: object
    guide: object
    epochs: int
    seconds: float
    started: bool
    write_config: bool = False


def _normal(value):
    return json.loads(json.dumps(runs.jsonable(value)))


def prepare(cell: Cell) -> _Turn | None:
    """Build the cell's model and guide from its seed (as ``zoo train`` does), check an
    existing run folder against this comparison's settings, and return its turn state (with
    ``write_config`` set when ``config.json`` is to be written), or None when it is finished.
    Nothing is written here."""
    pyro.set_rng_seed(cell.seed)  # the initial weights too are fixed by the seed
    model, guide = runs.build(cell.model, cell.guide, cell.dataset, cell.model_options,
                              cell.guide_options)
    model.check_data(cell.dataset)
    expected = _normal({"model": model.registry_name, "model_config": model.config,
                        "guide": guide.registry_name, "guide_options": guide.options,
                        "data": cell.data_spec, "train": cell.config})
    epochs, seconds, history = 0, 0.0, []
    checkpoint = cell.run / runs.CHECKPOINT
    if checkpoint.exists():
        ckpt = runs.load_checkpoint(checkpoint)
        epochs, seconds, history = ckpt["epoch"], ckpt["clock"]["seconds"], ckpt["history"]
    rewrite = True
    if (cell.run / runs.CONFIG).exists():
        existing = runs.read_config(cell.run)
        differ = [f"{k}: {existing.get(k)!r} there, {expected[k]!r} here" for k in expected
                  if k != "train" and existing.get(k) != expected[k]]
        old, new = existing.get("train", {}), expected["train"]
        differ += [f"train.{k}: {old.get(k)!r} there, {new[k]!r} here" for k in new
                   if k not in BUDGET_KEYS and old.get(k) != new[k]]
        if differ:
            raise ValueError(f"{cell.run} holds a run with other settings than this "
                             f"comparison's ({'; '.join(differ)}). Compare into another --out, "
                             "or delete that folder.")
        rewrite = any(old.get(k) != new[k] for k in BUDGET_KEYS)
    config = cell.config
    past = (epochs > config.epochs or config.max_seconds is not None
            and sum(h["seconds"] for h in history[:-1]) >= config.max_seconds)
    if past:
        raise ValueError(f"{cell.run} was trained past this comparison's budget ({epochs} "
                         f"epochs, {seconds:.1f} s against {config.epochs} epochs"
                         + (f", {config.max_seconds:g} s" if config.max_seconds else "")
                         + "): its cells would not be comparable. Use another --out.")
    if finished(config, epochs, seconds):
        return None
    return _Turn(cell, model, guide, epochs, seconds, checkpoint.exists(), rewrite)


def finished(config: TrainConfig, epochs: int, seconds: float) -> bool:
    """Whether a cell has trained its epochs or spent its ``max_seconds``."""
    return epochs >= config.epochs or (config.max_seconds is not None
                                       and seconds >= config.max_seconds)


def prepare_all(cells: list[Cell], status: dict) -> list[_Turn]:
    """:func:`prepare` every cell not in ``status`` (diverged before): the unfinished ones'
    turns. Every cell is checked before anything is written, so a refusal leaves every folder
    as it was."""
    return [t for t in (prepare(c) for c in cells if c.id not in status) if t is not None]


def train_cells(cells: list[Cell], turns: list[_Turn], budget_seconds, kl_warmup_fraction: float,
                status: dict, save_status, progress=None, callback=None) -> None:
    """Train the unfinished ``turns`` of ``cells`` (from :func:`prepare_all`) in turns (see
    the module docstring). A cell that diverges goes into ``status`` (id -> message, then
    ``save_status()``) and is left out; ``callback(cell, history)`` runs after every turn."""
    from zoo import cli

    budget = budget_seconds is not None
    for t in turns:
        if t.write_config:
            runs.write_config(t.cell.run, t.model, t.guide, t.cell.data_spec, t.cell.config)
    per_cell = budget_seconds if budget else cells[0].config.epochs if cells else 0
    todo_cells = [c for c in cells if c.id not in status]
    done_before = len(todo_cells) - len(turns)
    spent = sum(min(t.seconds if budget else t.epochs, per_cell) for t in turns)
    bar = Bar(per_cell * len(todo_cells), "s" if budget else "epochs", "compare", progress,
              initial=per_cell * done_before + spent)
    if done_before:
        bar.write(f"compare: {done_before} of {len(todo_cells)} cells already finished "
                  "(skipped)")
    schedules = ({KL_WEIGHT: LinearWarmup(seconds=kl_warmup_fraction * budget_seconds)}
                 if budget and kl_warmup_fraction else None)
    order = {id(t): i for i, t in enumerate(turns)}
    done = done_before
    try:
        while turns:
            turn = min(turns, key=lambda t: (t.seconds if budget else t.epochs, order[id(t)]))
            cell = turn.cell
            try:
                history = fit(turn.model, turn.guide, cell.dataset, cell.config,
                              epochs=turn.epochs + 1, resume=turn.started, out_dir=cell.run,
                              progress=bar.show, extra_metrics=cli.per_epoch_metrics,
                              schedules=schedules)
            except TrainingDiverged as e:
                status[cell.id] = str(e)
                save_status()
                turns.remove(turn)
                bar.write(f"compare: {cell.label}, seed {cell.seed} diverged: {e}")
                continue
            before = turn.seconds if budget else turn.epochs
            trained = len(history) > turn.epochs
            turn.epochs, turn.started = len(history), True
            turn.seconds = sum(h["seconds"] for h in history)
            now = turn.seconds if budget else turn.epochs
            ended = not trained or finished(cell.config, turn.epochs, turn.seconds)
            if ended:
                turns.remove(turn)
                done += 1
            bar.update(min(now, per_cell) - min(before, per_cell),
                       f"{done}/{len(todo_cells)} cells done"
                       + (f"; {cell.label}, seed {cell.seed} finished" if ended else ""),
                       force=ended)
            if callback is not None:
                callback(cell, history)
    finally:
        bar.close()
