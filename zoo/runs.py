r"""Run folders: what ``zoo train`` writes and every other command reads.

::

    RUN/
      config.json      model name and config, guide name and options, data, training config
      checkpoint.pt    model, guide, optimizer, epoch, history, RNG states (written atomically)
      metrics.jsonl    one line per epoch
      summary.json     final held-out metrics (rewritten by ``zoo evaluate``)
      *.png            figures

``config.json`` holds everything needed to rebuild the model, the guide and the data split, so
``load_run(RUN)`` gives back exactly the trained pair.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyro

from zoo import data as zoo_data
from zoo.registry import find_model, get_guide, get_model
from zoo.train import CHECKPOINT, TrainConfig, atomic_write_text, load_checkpoint

CONFIG = "config.json"
SUMMARY = "summary.json"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def build(model_name: str, guide_name: str | None, dataset, model_config=None,
          guide_options=None):
    """Model and guide for ``dataset``: data-fixed sizes from the model class, then
    ``model_config``; the guide defaults to the model's ``default_guide`` and options."""
    cls = find_model(model_name)
    model = get_model(model_name, **{**cls.data_config(dataset), **(model_config or {})})
    guide_name = guide_name or model.default_guide
    options = {**getattr(model, "default_guide_options", {}), **(guide_options or {})}
    guide = get_guide(guide_name, model, **options)
    return model, guide


def write_config(run_dir, model, guide, data_spec: dict, train_config: TrainConfig) -> dict:
    config = {
        "model": model.registry_name,
        "model_config": _jsonable(model.config),
        "guide": guide.registry_name,
        "guide_options": _jsonable(guide.options),
        "data": data_spec,
        "train": _jsonable(asdict(train_config)),
        "versions": {"pyro": pyro.__version__},
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(config, indent=2) + "\n", run_dir / CONFIG)
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


def write_summary(run_dir, summary: dict) -> None:
    atomic_write_text(json.dumps(_jsonable(summary), indent=2) + "\n", Path(run_dir) / SUMMARY)
