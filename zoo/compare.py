r"""``zoo compare``: swap guides and objectives on a model, train every cell alike, score every
cell alike, and report the differences with their error bars.

::

    result = compare("vae", guides=["diagonal_normal", "householder"],
                     objectives=["trace", "iwae:5"], seeds=[0, 1, 2], epochs=200,
                     train_options={"lr": 3e-3}, out="runs/cmp")
    result.table          # one row per configuration (pandas), mean and sd over seeds
    result.figures["log_likelihood.png"]
    result.posteriors["vae.householder.trace.seed0"]["posterior"]   # arviz InferenceData

    compare_runs(["runs/a", "runs/b"], out="runs/ab")   # run folders trained elsewhere

A *cell* is one (model, guide, objective, seed); each is a normal run folder,
``DIR/<model>/<guide>/<objective>[_K<k>]/seed<S>/``, with ``config.json`` written by
:func:`zoo.runs.write_config`, so ``zoo evaluate``, ``zoo sample`` and ``zoo train --resume``
read it like any other. All cells get the same data split and the same budget: ``epochs``
each, or ``budget_seconds`` of training each (evaluation excluded). The cells *take turns*,
epoch by epoch, the one behind (in epochs, or in training seconds under a budget) going next,
so load from other processes falls on all alike (``benchmarks/deep_models.py``'s scheme); every
turn is ``fit(..., epochs=k + 1, resume=True)``, which continues a run exactly, so a cell
trained in turns is, bit for bit, the run one ``fit`` call makes from the same initial weights
(the cell's seed set before ``runs.build``).

Before anything is trained, every name is checked (models, guides, objectives, options), every
guide against every model (an unfitting one is refused with the guides that fit), and every
(model, guide, objective) takes one loss evaluation on two training points. Rerunning the same
command skips finished cells (their files are not touched), resumes unfinished ones, and reuses
each cell's scores while its checkpoint is unchanged (``DIR/evaluations/``). A cell that
diverges is reported as such and not retried (a resume would diverge at the same step).

The parts: this module plans and refuses; :mod:`zoo.compare_train` trains the cells in turns
with the comparison's progress bar; :mod:`zoo.compare_folders` reads run folders and keeps each
cell's scores; :mod:`zoo.compare_eval` scores a cell; :mod:`zoo.compare_stats` holds the
statistics, :mod:`zoo.compare_report` the report and :mod:`zoo.compare_plots` its figures;
:mod:`zoo.cli_compare` is the command.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from pathlib import Path

import torch

from zoo import runs
from zoo.compare_eval import Evaluation
from zoo.compare_folders import STATUS, cells_from_runs, read_status
from zoo.compare_report import Comparison, build, setup_lines
from zoo.compare_train import Cell, ObjectiveSpec, prepare_all, train_cells
from zoo.registry import accepted_options, find_guide, find_model, get_guide, list_guides
from zoo.train import TrainConfig

SPEC = "compare.json"  # the comparison as last asked for
#: training options the comparison sets per cell itself
OWN = {"objective", "num_particles", "seed", "epochs", "max_seconds"}
BUDGET_CAP = 10**6  # epochs cap under a seconds budget


# ------------------------------------------------------------------------------ planning
def _objectives(objectives) -> list[ObjectiveSpec]:
    from zoo.infer.objectives import OBJECTIVES

    specs = [ObjectiveSpec.parse(o) for o in objectives]
    for spec in specs:
        OBJECTIVES.get(spec.name)  # unknown: a ValueError that lists them
    return specs


def _options_for(cls, options: dict) -> dict:
    accepted = accepted_options(cls)
    return {k: v for k, v in options.items() if k in accepted}


def _check_options(classes: dict, options: dict, what: str) -> None:
    """Each option must be taken by at least one of ``classes`` (name -> class)."""
    for key in options:
        if not any(key in accepted_options(cls) for cls in classes.values()):
            takes = sorted({k for cls in classes.values() for k in accepted_options(cls)})
            raise ValueError(f"no {what} of this comparison ({', '.join(classes)}) takes the "
                             f"option {key!r}; they take: {', '.join(takes)}.")


def train_config(model_cls, objective: ObjectiveSpec, seed: int, epochs, budget, options,
                 kl_warmup_fraction: float) -> TrainConfig:
    """As ``zoo train`` builds it: the engine's defaults, then the model's published settings
    (``default_train_config``), then ``options``; Pyro's checks off unless asked."""
    given = {"validate": False, **options}
    config = {**asdict(TrainConfig()), **model_cls.default_train_config, **given,
              "objective": objective.name, "num_particles": objective.num_particles,
              "seed": seed, "epochs": epochs or BUDGET_CAP, "max_seconds": budget}
    if kl_warmup_fraction and budget is None:
        config["kl_warmup"] = kl_warmup_fraction * epochs
    return TrainConfig(**config).check()


def _preflight(model_name, guide_name, objective: ObjectiveSpec, dataset, model_options,
               guide_options, config: TrainConfig) -> None:
    """One loss evaluation on two training points, so that a (guide, objective) that cannot
    run fails before any training, with the configuration named."""
    from zoo.infer.objectives import get_objective, training_loss

    model, guide = runs.build(model_name, guide_name, dataset, model_options, guide_options)
    model.check_data(dataset)
    x = dataset.train.batch(torch.arange(min(2, len(dataset.train))),
                            torch.Generator().manual_seed(0))
    elbo = get_objective(objective.name, num_particles=objective.num_particles,
                         max_plate_nesting=model.max_plate_nesting, **config.objective_options)
    try:
        loss = training_loss(elbo, model, guide)(x, num_data=len(dataset.train))
    except Exception as e:  # noqa: BLE001  (shown with the configuration, then re-raised)
        raise ValueError(f"{model_name} · {guide_name} · {objective.name} cannot train: "
                         f"{type(e).__name__}: {e}") from e
    if not torch.isfinite(loss):
        raise ValueError(f"{model_name} · {guide_name} · {objective.name}: the loss of the "
                         f"initial model is {loss.item()}.")


def plan(models, guides, objectives, seeds, out, epochs, budget_seconds, data_spec,
         model_options, guide_options, train_options, kl_warmup_fraction) -> list[Cell]:
    """The cells of a comparison, every refusal made: see the module docstring."""
    models = [models] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("name at least one model to compare.")
    if epochs is None and budget_seconds is None:
        raise ValueError("give the budget of every cell: epochs=N or budget_seconds=S.")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int)
                               or epochs < 1):
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
    if budget_seconds is not None and not (isinstance(budget_seconds, (int, float))
                                           and math.isfinite(budget_seconds)
                                           and budget_seconds > 0):
        raise ValueError(f"budget_seconds must be a number > 0, got {budget_seconds!r}.")
    if not 0 <= kl_warmup_fraction <= 1:
        raise ValueError(f"kl_warmup_fraction is a fraction of the budget in [0, 1], got "
                         f"{kl_warmup_fraction!r}.")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one, got {seeds}.")
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(train_options) - names) or sorted(OWN & set(train_options))
    if bad:
        raise ValueError(f"training option(s) {', '.join(bad)} cannot be given here; options: "
                         f"{', '.join(sorted(names - OWN))} (objectives, seeds and the budget "
                         "have their own arguments).")
    if kl_warmup_fraction and "kl_warmup" in train_options:
        raise ValueError("give kl_warmup (epochs) or kl_warmup_fraction, not both.")
    model_classes = {name: find_model(name) for name in models}
    objective_specs = _objectives(objectives)
    raw = runs.load_data(data_spec)
    datasets = {name: cls.prepare_data(raw) for name, cls in model_classes.items()}
    _check_options(model_classes, model_options, "model")
    instances = {}
    for name, cls in model_classes.items():
        config = {**cls.data_config(datasets[name]), **_options_for(cls, model_options)}
        instances[name] = cls(**config)
    guides = list(guides) if guides else list(dict.fromkeys(
        m.default_guide for m in instances.values()))
    guide_classes = {name: find_guide(name) for name in guides}
    for model in instances.values():
        fitting = list_guides(model)
        for guide in guides:
            if guide not in fitting:
                get_guide(guide, model)  # raises, naming the guides that fit
    _check_options(guide_classes, guide_options, "guide")

    cells = []
    for model_name, cls in model_classes.items():
        for guide_name in guides:
            for objective in objective_specs:
                configs = [train_config(cls, objective, s, epochs, budget_seconds, train_options,
                                        kl_warmup_fraction) for s in seeds]
                _preflight(model_name, guide_name, objective, datasets[model_name],
                           _options_for(cls, model_options),
                           _options_for(guide_classes[guide_name], guide_options), configs[0])
                for seed, config in zip(seeds, configs):
                    cells.append(Cell(
                        model=model_name, guide=guide_name, objective=objective, seed=seed,
                        run=Path(out) / model_name / guide_name / objective.folder / f"seed{seed}",
                        config=config, dataset=datasets[model_name], data_spec=data_spec,
                        model_options=_options_for(cls, model_options),
                        guide_options=_options_for(guide_classes[guide_name], guide_options)))
    return cells


# ------------------------------------------------------------------------------ public API
def compare(models, guides=None, objectives=("trace",), seeds=(0,), *, out, epochs=None,
            budget_seconds=None, data="digits", data_options=None, model_options=None,
            guide_options=None, train_options=None, kl_warmup_fraction=0.0,
            evaluation: Evaluation | None = None, cell_figures: bool = True, progress=None,
            callback=None, command: str | None = None) -> Comparison:
    """Train every (model, guide, objective, seed) cell into ``out`` and report on them.

    :param models: a model name, or several (every guide must fit every model)
    :param guides: guide family names (default: each model's default guide); the first
        configuration (first model, guide, objective) is the reference of the paired differences
    :param objectives: objective names, ``"iwae:5"`` (or ``("iwae", 5)``) for K particles
    :param seeds: training seeds (initialization, minibatches, noise); the split is the data's
    :param epochs: epochs per cell; with ``budget_seconds`` too, the cap
    :param budget_seconds: training seconds per cell (evaluation excluded), in turns
    :param data_options: loader options (``{"seed": 1}`` for another split)
    :param model_options: model options; each goes to every model that takes it
    :param guide_options: guide options; each goes to every guide that takes it
    :param train_options: :class:`~zoo.train.TrainConfig` fields (``lr``, ``batch_size``, ...)
    :param kl_warmup_fraction: KL warm-up over this fraction of each cell's budget (epochs or
        seconds): the weight of the latents' terms rises linearly from 0 to 1
    :param evaluation: how every cell is scored (:class:`~zoo.compare_eval.Evaluation`)
    :param cell_figures: each cell's own figures as ``zoo train`` writes them (training curves,
        samples and reconstructions or topics: a few seconds per cell)
    :param progress: bars on a terminal (None), always (True) or never (False)
    :param callback: ``f(cell, history)`` after every turn (raise to stop; rerun to resume)
    :returns: a :class:`Comparison`
    """
    out = Path(out)
    data_spec = runs.data_spec(data, data_options)  # a file: its absolute path and hash
    model_options, guide_options = dict(model_options or {}), dict(guide_options or {})
    train_options = dict(train_options or {})
    evaluation = (evaluation or Evaluation()).check()
    cells = plan(models, guides, objectives, seeds, out, epochs, budget_seconds, data_spec,
                 model_options, guide_options, train_options, kl_warmup_fraction)
    status = read_status(out)
    for cell in cells:  # a diverged cell whose folder was deleted is trained afresh
        if cell.id in status and not (cell.run / runs.CHECKPOINT).exists():
            del status[cell.id]
    turns = prepare_all(cells, status)  # existing folders checked: nothing written before
    out.mkdir(parents=True, exist_ok=True)
    spec = {"models": [models] if isinstance(models, str) else list(models),
            "guides": list(dict.fromkeys(c.guide for c in cells)),
            "objectives": [ObjectiveSpec.parse(o).label for o in objectives],
            "seeds": list(seeds), "epochs": epochs, "budget_seconds": budget_seconds,
            "data": data_spec, "model_options": model_options, "guide_options": guide_options,
            "train_options": train_options, "kl_warmup_fraction": kl_warmup_fraction,
            "command": command}
    runs.write_json(spec, out / SPEC)
    train_cells(cells, turns, budget_seconds, kl_warmup_fraction, status,
                lambda: runs.write_json(status, out / STATUS), progress, callback)
    setup = setup_lines(cells, spec, evaluation)
    return build(cells, out, evaluation, setup, status, progress, training=True,
                 budget=budget_seconds is not None, command=command, cell_figures=cell_figures)


def compare_runs(run_dirs, *, out=None, evaluation: Evaluation | None = None, progress=None,
                 command: str | None = None) -> Comparison:
    """Score and compare run folders trained elsewhere (``zoo train``, an earlier
    ``zoo compare``). Runs on different data or splits are refused with the reason. Each run's
    configuration is its model, guide, objective and options; runs that differ only in their
    seed are seeds of one configuration (the first run's configuration is the reference)."""
    evaluation = (evaluation or Evaluation()).check()
    cells = cells_from_runs(run_dirs)
    out = Path(out) if out is not None else None
    setup = [f"Runs: {', '.join(f'`{c.run}`' for c in cells)}.",
             *setup_lines(cells, None, evaluation)]
    return build(cells, out, evaluation, setup, {}, progress, training=False, budget=False,
                 command=command)


__all__ = ["Comparison", "Evaluation", "compare", "compare_runs", "plan", "train_config"]
