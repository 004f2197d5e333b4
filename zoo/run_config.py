r"""What a run's ``config.json`` holds, across versions, and the data it names.

``zoo train`` writes ``config.json`` (:func:`zoo.runs.write_config`); this module says what a
valid one is and how to read one an older version wrote:

- its entries (:data:`CONFIG_KEYS`), with the versions of zoo, Pyro and torch that wrote it
  (:func:`versions`) and a record of every ``--resume``;
- :data:`OPTION_HISTORY`: the options each model and guide gained after its first release, with
  the value that rebuilds what runs written before them trained; :func:`check_config` fills a
  missing key from it, or refuses the config naming the key;
- the data, by registered name or by absolute path and SHA-256 of the content
  (:func:`data_spec`), so that a run folder works from any directory and :func:`load_data`
  warns (:class:`DataChangedWarning`) when the file changed since training.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pyro
import torch

from zoo import __version__
from zoo import data as zoo_data
from zoo.data.registry import DATASETS
from zoo.options import check_keywords
from zoo.registry import accepted_options, find_guide, find_model

#: data options that name files: recorded as absolute paths, as the data itself
FILE_OPTIONS = ("vocab",)


class DataChangedWarning(UserWarning):
    """A run's data file is not the one it was trained on (its SHA-256 differs)."""


def fingerprint(path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (name and bytes, sorted by name)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    for file in files:
        if file is not path:
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def data_spec(name_or_path, options: dict | None = None) -> dict:
    """What ``config.json`` records about the data: a registered dataset by its name; a file or
    folder by its absolute path and content hash (so the run folder works from any directory,
    and a changed file is noticed), with file-valued options (``vocab=``) absolute too."""
    options = dict(options or {})
    name = data_name(name_or_path)
    if name in DATASETS:
        return {"name": name, "options": options}
    for key in FILE_OPTIONS:
        if isinstance(options.get(key), str) and Path(options[key]).exists():
            options[key] = data_name(options[key])
    return {"name": name, "options": options, "sha256": fingerprint(name)}


def data_name(name_or_path) -> str:
    """A registered dataset's name as it is, a path made absolute."""
    name = str(name_or_path)
    return name if name in DATASETS else str(Path(name).resolve())


def load_data(data_spec: dict, where="config.json"):
    """The dataset ``data_spec`` describes; a :class:`DataChangedWarning` when its file's hash
    is not the recorded one, and a message saying where (``where``: the run's config.json) to
    fix the path when it is gone."""
    name = data_spec["name"]
    if name not in DATASETS and not Path(name).exists():
        if not Path(name).is_absolute():
            raise ValueError(
                f"{where} names its data {name!r}, a path relative to the folder the run was "
                "trained in (runs before zoo 0.2 stored the path as typed): run the command "
                "from that folder, or write the data's absolute path into data.name there.")
        raise ValueError(f"the run's data {name} is not there any more (moved or deleted?): put "
                         f"it back, or write its new path into data.name of {where}.")
    recorded = data_spec.get("sha256")
    if recorded is not None:
        now = fingerprint(name)
        if now != recorded:
            warnings.warn(DataChangedWarning(
                f"{name} changed since the run was trained (SHA-256 {recorded[:12]}... then, "
                f"{now[:12]}... now): the split and the metrics may not be training's."),
                stacklevel=2)
    return zoo_data.load(name, **data_spec.get("options", {}))


# ------------------------------------------------------------------------ config.json
#: Options added to a model or guide after its first release, each with the value that
#: rebuilds what runs written before the option existed trained (their ``config.json`` lacks
#: the key): the documented default for those versions. A key missing from a config and not
#: listed here is refused by name (unless the config was written by this very version, whose
#: defaults are its constructors').
OPTION_HISTORY = {
    "model": {
        # Blei & Lafferty's mixture decoder before NVCTM's product of experts; the prior
        # learned from the first step before the warm-up; the full learned prior before the
        # correlation form.
        "ctm": {"decoder": "mixture", "prior_warmup": 0.0, "prior_form": "full"},
        "dlgm": {"noise_init": 1.0},  # the noise layers started at scale 1
        # the paper's decoder before BTM's likelihood; topics fitted by the gradient before EM
        "gbtm": {"likelihood": "endpoints", "topic_step": "gradient"},
    },
    "guide": {
        # before BatchNorm heads, E-steps in training, natural topic steps and the step scale;
        # init_concentration only set the initial weights, which a checkpoint replaces
        "dirichlet": {"batch_norm": False, "global_step_scale": 1.0, "local_steps": 0,
                      "global_step": "gradient", "init_concentration": 10.0,
                      "natural_offset": None, "natural_decay": None, "natural_batch": None},
        # before topics seeded from documents (k-means++) and BatchNorm on by default
        "logistic_normal": {"batch_norm": False, "global_step_scale": 1.0,
                            "local_init_scale": 0.7, "seed_topics": False},
    },
}
#: the entries of a ``zoo train`` run's ``config.json`` (``versions`` and ``resumes`` optional)
CONFIG_KEYS = ("model", "model_config", "guide", "guide_options", "data", "train", "versions",
               "resumes")
DATA_KEYS = ("name", "options", "sha256")


def versions() -> dict:
    """The versions of zoo, Pyro and torch, as a run's ``config.json`` records them."""
    return {"zoo": __version__, "pyro": pyro.__version__, "torch": torch.__version__}


def check_config(config: dict, path) -> dict:
    """A ``zoo train`` run's config, every key known and every option of its model and guide
    present: a key missing from an older config gets its documented default
    (:data:`OPTION_HISTORY`), anything else wrong is refused naming the key. The ``train``
    entry is the CLI's to check (its keys are :class:`~zoo.train.TrainConfig`'s). ``path`` is
    the config's file, for messages."""
    if "target" in config and "model" not in config:
        raise ValueError(f"{path}: a `zoo nvi` run (it has a target, no model): evaluate it with "
                         "`zoo nvi evaluate RUN`.")
    unknown = [k for k in config if k not in CONFIG_KEYS]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; a run's config.json holds "
                         f"{', '.join(CONFIG_KEYS)}.")
    for key, kind in (("model", str), ("model_config", dict), ("guide", str),
                      ("guide_options", dict), ("data", dict), ("train", dict)):
        if key not in config:
            raise ValueError(f"{path}: no {key!r} entry; a run's config.json holds "
                             f"{', '.join(CONFIG_KEYS[:6])} (`zoo train` writes them).")
        if not isinstance(config[key], kind):
            what = "a string" if kind is str else "a JSON object"
            raise ValueError(f"{path}: {key!r} must be {what}, got {config[key]!r}.")
    data = config["data"]
    unknown = [k for k in data if k not in DATA_KEYS]
    if unknown:
        raise ValueError(f"{path}: data entry {unknown[0]!r} is not one of "
                         f"{', '.join(DATA_KEYS)}.")
    if not isinstance(data.get("name"), str) or not isinstance(data.get("options", {}), dict):
        raise ValueError(f"{path}: data must hold a \"name\" (a dataset or a path) and "
                         f"\"options\" (a JSON object), got {json.dumps(data)}.")
    written_by = (config.get("versions") or {}).get("zoo")
    config = dict(config)
    for kind, cls in (("model", _named(find_model, config["model"], path)),
                      ("guide", _named(find_guide, config["guide"], path))):
        entry = f"{kind}_config" if kind == "model" else "guide_options"
        options = dict(config[entry])
        try:
            check_keywords(cls, options, f"config.json {entry}", f"{kind} '{config[kind]}'")
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        history = OPTION_HISTORY[kind].get(config[kind], {})
        for key, param in accepted_options(cls).items():
            if key in options:
                continue
            if key in history:
                options[key] = history[key]
            elif written_by != __version__ or param.default is param.empty:
                raise ValueError(
                    f"{path}: {entry} has no {key!r} (written by zoo "
                    f"{written_by or '0.2.0 or earlier'}, and no default for its runs is "
                    f"documented); add \"{key}\": VALUE as the run was trained.")
        config[entry] = options
    return config


def _named(find, name, path):
    try:
        return find(name)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
