r"""Run folders: what ``zoo train`` writes and every other command reads.

::

    RUN/
      config.json      model name and config, guide name and options, data, training config
      checkpoint.pt    model, guide, optimizer, epoch, history, RNG states (written atomically)
      metrics.jsonl    one line per epoch
      summary.json     final held-out metrics (rewritten by ``zoo evaluate``)
      *.png            figures

``config.json`` holds everything needed to rebuild the model, the guide and the data split, so
``load_run(RUN)`` gives back exactly the trained pair. This module owns the folder: its file
names, the atomic writes (a temporary file in the same folder, then ``os.replace``, so a crash
mid-write never leaves a truncated file), the RNG states a checkpoint carries, and reading them
back. The engine (:mod:`zoo.train`) writes through it; nested-VI runs (``zoo nvi``) use the same
folder with ``programs`` in place of model and guide.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import pyro
import torch

from zoo import data as zoo_data
from zoo.registry import default_guide_options, find_model, get_guide, get_model

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


# --------------------------------------------------------------------------- atomic writes
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
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(obj, path) -> None:
    atomic_write_text(json.dumps(jsonable(obj), indent=2) + "\n", path)


def jsonable(obj):
    """Dataclasses, tuples and nested dicts as plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------ RNG states
def rng_state(generator: torch.Generator | None = None, **generators) -> dict:
    """Every random stream a run draws from: Python, NumPy, torch (CPU, CUDA), the data
    generator when there is one (``"data"``), and any other named ``generators`` (the engine's
    generator on the data's device)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if generator is not None:
        state["data"] = generator.get_state()
    for name, other in generators.items():
        if other is not None:
            state[name] = other.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None, **generators) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["data"])
    for name, other in generators.items():
        if other is not None and name in state:
            other.set_state(state[name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- checkpoints
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


def append_metrics(run_dir, record: dict) -> None:
    """One epoch's line of ``metrics.jsonl`` (written after its checkpoint)."""
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def rewrite_metrics(run_dir, history: list[dict]) -> None:
    """``metrics.jsonl`` as the checkpoint's history: a killed run may have logged epochs past
    its last checkpoint."""
    atomic_write_text("".join(json.dumps(h) + "\n" for h in history), Path(run_dir) / METRICS)


# ------------------------------------------------------------------------ config and models
def build(model_name: str, guide_name: str | None, dataset, model_config=None,
          guide_options=None):
    """Model and guide for ``dataset``: data-fixed sizes from the model class, then
    ``model_config``; the guide defaults to the model's ``default_guide`` and options."""
    cls = find_model(model_name)
    model = get_model(model_name, **{**cls.data_config(dataset), **(model_config or {})})
    guide_name = guide_name or model.default_guide
    options = {**default_guide_options(model, guide_name), **(guide_options or {})}
    guide = get_guide(guide_name, model, **options)
    return model, guide


def write_config(run_dir, model, guide, data_spec: dict, train_config) -> dict:
    config = {
        "model": model.registry_name,
        "model_config": jsonable(model.config),
        "guide": guide.registry_name,
        "guide_options": jsonable(guide.options),
        "data": data_spec,
        "train": jsonable(train_config),
        "versions": {"pyro": pyro.__version__},
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, run_dir / CONFIG)
    return config


def read_config(run_dir) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ValueError(f"{run_dir}: not a run folder (no {CONFIG}); make one with `zoo train`.")
    return json.loads(path.read_text())


def load_data(data_spec: dict):
    return zoo_data.load(data_spec["name"], **data_spec.get("options", {}))


def load_run(run_dir, device="cpu"):
    """``(model, guide, dataset, config, checkpoint)`` of a trained run, in eval mode."""
    config = read_config(run_dir)
    dataset = find_model(config["model"]).prepare_data(load_data(config["data"]))
    model = get_model(config["model"], **config["model_config"])
    guide = get_guide(config["guide"], model, **config["guide_options"])
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT, model, guide, map_location=device)
    model.to(device).eval()
    guide.to(device).eval()
    return model, guide, dataset, config, ckpt


def build_nested(config: dict):
    """The nested-VI programs and objective a ``zoo nvi`` run's ``config.json`` describes."""
    from zoo.infer.nested import NestedObjective
    from zoo.infer.nested_programs import NestedPrograms
    from zoo.models.targets import INIT_SCALES, GeometricPath, get_target

    path = GeometricPath(get_target(config["target"]), INIT_SCALES[config["target"]])
    programs = NestedPrograms(path, config["num_levels"], config["schedule"],
                              config["hidden_dim"])
    return programs, NestedObjective(config["objective"], resample=config["resample"],
                                     resampler=config.get("resampler", "systematic"))


def load_nested_run(run_dir, device="cpu"):
    """``(programs, objective, config, checkpoint)`` of a ``zoo nvi`` run, in eval mode."""
    config = read_config(run_dir)
    programs, objective = build_nested(config)
    ckpt = load_checkpoint(Path(run_dir) / CHECKPOINT, map_location=device)
    programs.load_state_dict(ckpt["programs"])
    return programs.to(device).eval(), objective, config, ckpt


def write_summary(run_dir, summary: dict) -> None:
    write_json(summary, Path(run_dir) / SUMMARY)
