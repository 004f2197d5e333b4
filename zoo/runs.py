r"""Run folders: what ``zoo train`` writes and every other command reads.

::

    RUN/
      config.json      model name and config, guide name and options, data, training config,
                       the versions that wrote it, and what each ``--resume`` changed
      checkpoint.pt    model, guide, optimizer, epoch, history, RNG states (written atomically)
      metrics.jsonl    one line per epoch
      summary.json     final held-out metrics (rewritten by ``zoo evaluate``)
      *.png            figures

``config.json`` holds everything needed to rebuild the model, the guide and the data split, so
``load_run(RUN)`` gives back exactly the trained pair, from any working directory: a data file
is recorded by its absolute path with the SHA-256 of its content (:func:`data_spec`), and
loading warns when the file changed since (:class:`DataChangedWarning`). This module owns the
folder: its file names, the atomic writes (a temporary file in the same folder, created with the
permissions the umask gives any new file, then ``os.replace``, so a crash mid-write never leaves a
truncated file), the RNG states a checkpoint carries, and reading them back with a message that
names the file and the fix when they are damaged; what a valid ``config.json`` holds, across
versions, is :mod:`zoo.run_config`'s (:data:`OPTION_HISTORY`: what an older one that lacks an
option means). The engine
(:mod:`zoo.train`) writes through it; nested-VI runs (``zoo nvi``) use the same folder with
``programs`` in place of model and guide.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import torch

from zoo import run_config
from zoo.registry import default_guide_options, find_model, get_guide, get_model
from zoo.run_config import (  # noqa: F401  (the run folder's API, defined there)
    OPTION_HISTORY,
    DataChangedWarning,
    data_name,
    data_spec,
    fingerprint,
    versions,
)

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
#: what the commands write into a run folder besides figures (``--overwrite`` removes these)
RUN_FILES = (CONFIG, CHECKPOINT, METRICS, SUMMARY, "evaluation.json")


# --------------------------------------------------------------------------- atomic writes
def _temporary(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` (``NAME.<random>.tmp``), mode 0666 less the umask as any new
    file gets (``tempfile.mkstemp`` makes 0600: run folders a colleague could not read)."""
    while True:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _write_atomically(path, write, mode: str) -> None:
    """``write(file)`` into a temporary file beside ``path``, flushed to disk, then renamed over
    ``path``: readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError:  # not every file system syncs folders; the rename is atomic regardless
        pass


def atomic_save(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``: a crash
    mid-write never leaves a truncated checkpoint behind."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    _write_atomically(path, lambda f: f.write(text), "w")


def write_json(obj, path) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(json.dumps(jsonable(obj), indent=2) + "\n", path)


def jsonable(obj):
    """Dataclasses, tuples and nested dicts as plain JSON values; a NaN or infinite float as
    ``null`` (JSON has neither, and strict readers such as ``jq`` refuse Python's ``NaN``)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        obj = asdict(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def remove_temporary(run_dir) -> None:
    """Delete the temporary files a killed process left beside the run's files."""
    for tmp in Path(run_dir).glob("*.tmp"):
        if any(tmp.name.startswith(name + ".") for name in RUN_FILES):
            tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------ the folder itself
def holds_run(folder) -> bool:
    """Whether ``folder`` holds a run (its ``config.json`` or ``checkpoint.pt``)."""
    return any((Path(folder) / name).exists() for name in (CONFIG, CHECKPOINT))


def clear_run(folder) -> None:
    """Remove a run's files (``RUN_FILES``, figures, temporaries) from ``folder``; anything else
    in it stays."""
    folder = Path(folder)
    for name in RUN_FILES:
        (folder / name).unlink(missing_ok=True)
    for figure in folder.glob("*.png"):
        figure.unlink()
    remove_temporary(folder)


def check_writable(folder, flag: str = "--out") -> None:
    """Refuse, before any work, a folder the process cannot write into (or create)."""
    folder = Path(folder)
    existing = folder
    while not os.path.exists(existing):  # False too where the process may not look
        existing = existing.parent
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {folder}: {existing} is a file, so no folder can be made there.")
    # the effective ids: what the process may do, which is what a later write will meet
    effective = os.access in os.supports_effective_ids
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=effective):
        raise ValueError(f"{flag} {folder}: cannot write there (permission denied, or a "
                         "read-only file system); choose a folder you can write to.")


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
    """Restore the Python, NumPy and torch random states saved in a checkpoint, and those of the
    given generators."""
    # torch takes generator states as CPU byte tensors only (a CUDA generator's too), and a
    # checkpoint loaded with map_location=<a GPU> hands them over on that GPU
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if generator is not None:
        generator.set_state(state["data"].cpu())
    for name, other in generators.items():
        if other is not None and name in state:
            other.set_state(state[name].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- checkpoints
#: what the engine needs in a checkpoint to resume (older checkpoints can still be evaluated)
RESUMABLE = ("model", "guide", "objective", "optimizer", "epoch", "history", "rng", "clock")


def damaged(path, problem: str) -> ValueError:
    """The ``ValueError`` for a run file that does not load: what was wrong and how to recover."""
    return ValueError(
        f"{path}: {problem}. The file is damaged or was not written by zoo (which writes "
        f"checkpoints atomically: a crash cannot leave half of one). Restore it from a copy, or "
        f"delete it: `zoo train --resume --out {Path(path).parent}` then trains the run again "
        f"from its {CONFIG}.")


def load_checkpoint(path, model=None, guide=None, map_location="cpu") -> dict:
    """Read a checkpoint and, when given, load its weights into ``model`` and ``guide``; a
    ``ValueError`` naming the file and the fix when it is missing, empty, truncated, not a
    checkpoint, or holds weights of another architecture."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no checkpoint there (train first, or check the run folder).")
    if path.stat().st_size == 0:
        raise damaged(path, "an empty file (0 bytes)")
    # Our checkpoints hold RNG states (NumPy arrays, tuples), so weights_only=False; only load
    # checkpoints you wrote yourself.
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated zip, random bytes, a pickle of something else, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise damaged(path, f"not a readable checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or "epoch" not in ckpt:
        raise damaged(path, "not a zoo checkpoint (no epoch in it)")
    if isinstance(ckpt.get("rng"), dict):  # torch takes RNG states as CPU byte tensors only
        ckpt["rng"] = {name: _on_cpu(value) for name, value in ckpt["rng"].items()}
    for name, module in (("model", model), ("guide", guide)):
        if module is not None:
            load_state(module, ckpt, name, path)
    return ckpt


def _on_cpu(state):
    """An RNG state (a tensor, or a list of them for CUDA) as torch restores it: on the CPU,
    wherever ``map_location`` put it (a meta tensor, which has no data, stays as it is)."""
    if isinstance(state, list):
        return [_on_cpu(s) for s in state]
    if isinstance(state, torch.Tensor) and state.device.type not in ("cpu", "meta"):
        return state.cpu()
    return state


#: State-dict entries of older checkpoints: dropped, or filled from the model's config.
STATE_HISTORY = {
    # CTM counted its prior warm-up in a buffer until 0.2.0 (now the engine's schedule clock),
    # and before the warm-up existed its prior was learned from the first step.
    "ctm": {"drop": ("docs_seen",),
            "fill": {"prior_learning": lambda m: torch.tensor(bool(m.config["learn_prior"]))}},
    # GraphBTM before BTM's likelihood: the endpoint form, which seeds no topics
    "gbtm": {"fill": {"topics_seeded": lambda m: torch.tensor(True)}},
}


def load_state(module, ckpt: dict, name: str, path) -> None:
    """Load ``ckpt[name]`` into ``module``, upgrading older entries (:data:`STATE_HISTORY`);
    weights that do not fit are refused naming the file and the entries."""
    if name not in ckpt:
        raise damaged(path, f"no {name} weights in it")
    state = dict(ckpt[name])
    history = STATE_HISTORY.get(module.registry_name, {})
    for key in history.get("drop", ()):
        state.pop(key, None)
    expected = module.state_dict()
    for key, fill in history.get("fill", {}).items():
        if key in expected and key not in state:
            state[key] = fill(module)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problem = "; ".join(f"{what} {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                        for what, keys in (("missing", missing), ("unexpected", unexpected))
                        if keys)
    if not problem:
        try:
            module.load_state_dict(state)
            return
        except RuntimeError as exc:  # shapes that differ
            problem = str(exc).strip().splitlines()[-1].strip()
    raise ValueError(f"{path}: its {name} weights do not fit the {name} that {CONFIG} describes "
                     f"({problem}). Was {CONFIG} edited, or the checkpoint copied from another "
                     "run?")


def append_metrics(run_dir, record: dict) -> None:
    """One epoch's line of ``metrics.jsonl`` (written after its checkpoint)."""
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(jsonable(record)) + "\n")


def rewrite_metrics(run_dir, history: list[dict]) -> None:
    """``metrics.jsonl`` as the checkpoint's history: a killed run may have logged epochs past
    its last checkpoint."""
    atomic_write_text("".join(json.dumps(jsonable(h)) + "\n" for h in history),
                      Path(run_dir) / METRICS)


# ------------------------------------------------------------------------ config and models
def build(model_name: str, guide_name: str | None, dataset, model_config=None,
          guide_options=None):
    """Model and guide for ``dataset``: data-fixed sizes from the model class, then
    ``model_config``; the guide defaults to the model's ``default_guide`` and options."""
    model = build_model(model_name, dataset, model_config)
    return model, build_guide(model, guide_name, guide_options)


def build_model(model_name: str, dataset, model_config=None):
    """The model for ``dataset``: data-fixed sizes from the model class, then ``model_config``."""
    cls = find_model(model_name)
    return get_model(model_name, **{**cls.data_config(dataset), **(model_config or {})})


def build_guide(model, guide_name: str | None, guide_options=None):
    """The guide ``guide_name`` (default: the model's) with the model's default options for it,
    then ``guide_options``."""
    guide_name = guide_name or model.default_guide
    options = {**default_guide_options(model, guide_name), **(guide_options or {})}
    return get_guide(guide_name, model, **options)


def write_config(run_dir, model, guide, data: dict, train_config) -> dict:
    """Write the run's ``config.json`` (everything needed to rebuild model, guide and data split)
    and return it."""
    config = {
        "model": model.registry_name,
        "model_config": jsonable(model.config),
        "guide": guide.registry_name,
        "guide_options": jsonable(guide.options),
        "data": data,  # data_spec()
        "train": jsonable(train_config),
        "versions": versions(),
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(config, run_dir / CONFIG)
    return config


def read_config(run_dir) -> dict:
    """``config.json`` as written (``zoo train`` runs: check it with :func:`check_config`)."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ValueError(f"{run_dir}: not a run folder (no {CONFIG}); make one with `zoo train`.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the run folder is damaged: restore "
                         f"{CONFIG} from a copy.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a run's config (a JSON object is expected).")
    return config


def check_config(config: dict, run_dir) -> dict:
    """:func:`zoo.run_config.check_config` of the run in ``run_dir``."""
    return run_config.check_config(config, Path(run_dir) / CONFIG)


def load_data(spec: dict, run_dir=None):
    """The dataset a run's data ``spec`` describes (:func:`zoo.run_config.load_data`)."""
    return run_config.load_data(spec, Path(run_dir or ".") / CONFIG)


def load_run(run_dir, device="cpu"):
    """``(model, guide, dataset, config, checkpoint)`` of a trained run, in eval mode."""
    config = check_config(read_config(run_dir), run_dir)
    if not (Path(run_dir) / CHECKPOINT).exists():
        raise ValueError(f"{run_dir}: no {CHECKPOINT} yet (the run stopped before its first "
                         f"checkpoint); `zoo train --resume --out {run_dir}` trains it.")
    dataset = find_model(config["model"]).prepare_data(load_data(config["data"], run_dir))
    try:
        model = get_model(config["model"], **config["model_config"])
        guide = get_guide(config["guide"], model, **config["guide_options"])
    except ValueError as exc:
        raise ValueError(f"{Path(run_dir) / CONFIG}: {exc}") from None
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
    if "programs" not in ckpt:
        raise damaged(Path(run_dir) / CHECKPOINT, "no nested-VI programs in it")
    try:
        programs.load_state_dict(ckpt["programs"])
    except RuntimeError as exc:
        raise ValueError(f"{Path(run_dir) / CHECKPOINT}: its programs do not fit {CONFIG} "
                         f"({str(exc).strip().splitlines()[-1].strip()}).") from None
    return programs.to(device).eval(), objective, config, ckpt


def write_summary(run_dir, summary: dict) -> None:
    """Write the run's ``summary.json``."""
    write_json(summary, Path(run_dir) / SUMMARY)
