"""What the device tests share (``tests/test_devices.py`` on the CPU, ``tests/cuda/`` on a GPU):
for every registered model, small data of the kind it takes and a small configuration, both as
Python objects and as ``zoo train`` arguments, so that both suites walk the whole registry."""

from __future__ import annotations

import inspect

from zoo import data as zoo_data
from zoo.registry import find_model, list_models

#: raw text with word order, for GraphBTM's biterms
DOCS = ["the cat sat on the mat with the dog", "stocks fell as markets closed lower today",
        "the dog chased the cat around the mat", "markets rallied and stocks rose higher today"]

MODELS = list_models()


def small_config(name: str) -> dict:
    """Constructor options that keep a model small (the data fix ``input_dim``)."""
    cls = find_model(name)
    params = inspect.signature(cls).parameters
    config = {}
    for key, value in (("hidden_dims", (32,)), ("transition_dims", (16,)), ("num_topics", 3),
                       ("num_components", 3)):
        if key in params:
            config[key] = value
    if "latent_dims" in params:
        config["latent_dims"] = (4, 2)
    elif "latent_dim" in params:
        config["latent_dim"] = 3
    return config


def data_spec(name: str, tmp_path) -> tuple[str, dict]:
    """``(name or path, loader options)`` of data the model takes."""
    cls = find_model(name)
    if cls.graph_input:  # needs token order: raw text
        docs = tmp_path / "docs.txt"
        docs.write_text("\n".join(DOCS * 10) + "\n")
        return str(docs), {"stop_words": None}
    if cls.topic_model:
        return "reuters", {}
    if cls().config.get("likelihood") == "bernoulli":
        return "digits", {}
    return "digits", {"binarize": False}  # Gaussian observations


def load_data(name: str, tmp_path):
    """The dataset :func:`data_spec` names, prepared for the model (GraphBTM's biterms)."""
    source, options = data_spec(name, tmp_path)
    return find_model(name).prepare_data(zoo_data.load(source, **options))


def train_argv(name: str, tmp_path, out, *extra) -> list[str]:
    """``zoo train`` arguments for a small run of ``name`` on its data, written to ``out``."""
    import json

    source, options = data_spec(name, tmp_path)
    argv = ["train", name, "--data", source, "--out", str(out), "--quiet", "--seed", "0"]
    for key, value in options.items():
        argv += ["--data-opt", f"{key}={json.dumps(value)}"]
    for key, value in small_config(name).items():
        value = list(value) if isinstance(value, tuple) else value
        argv += ["--model-opt", f"{key}={json.dumps(value)}"]
    return argv + list(extra)
