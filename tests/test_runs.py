"""The run folder (``zoo/runs.py``): atomic writes that respect the umask, checkpoints that are
refused with the file's name and the fix when damaged, configs of older versions loaded with
their documented defaults or refused by key, data recorded so that a run folder travels."""

import hashlib
import json
import os
import warnings

import pytest
import torch

import zoo
from zoo import runs
from zoo.data import Dataset, TensorSplit
from zoo.registry import get_guide, get_model


@pytest.fixture
def umask():
    """Set the process umask for one test, then put it back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    runs.atomic_save({"epoch": 1}, tmp_path / "checkpoint.pt")
    runs.write_json({"a": 1}, tmp_path / "config.json")
    for name in ("checkpoint.pt", "config.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    runs.write_json({"old": True}, tmp_path / "config.json")

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        runs.atomic_save({"x": Unsaveable()}, tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_json_files_are_strict_json_with_null_for_nan_and_infinity(tmp_path):
    """Summaries and metrics may hold NaN where a figure does not apply (k-hat when no point
    has enough particles for the Pareto fit): JSON has no NaN, so it is written as null, which
    strict readers (``jq``, JavaScript) accept."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    runs.write_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": (2, -float("inf"))},
                    tmp_path / "summary.json")
    runs.append_metrics(tmp_path, {"epoch": 1, "heldout_elbo": float("nan")})
    assert json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse) == {
        "a": None, "b": [None, 1.5], "c": [2, None]}
    assert json.loads((tmp_path / runs.METRICS).read_text(), parse_constant=refuse) == {
        "epoch": 1, "heldout_elbo": None}


def test_only_the_runs_own_temporaries_are_removed(tmp_path):
    for name in ("checkpoint.pt.1a2b3c4d.tmp", "config.json.00ff00ff.tmp", "mine.tmp"):
        (tmp_path / name).write_text("x")
    runs.remove_temporary(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.tmp"]


def vae_pair(latent_dim=2):
    model = get_model("vae", input_dim=6, latent_dim=latent_dim, hidden_dims=(4,))
    return model, get_guide("diagonal_normal", model, hidden_dims=(4,))


@pytest.fixture
def checkpoint(tmp_path):
    model, guide = vae_pair()
    path = tmp_path / runs.CHECKPOINT
    runs.atomic_save({"model": model.state_dict(), "guide": guide.state_dict(), "epoch": 3,
                      "history": []}, path)
    return path


@pytest.mark.parametrize("damage,problem", [
    (lambda b: b"", r"an empty file \(0 bytes\)"),
    (lambda b: b[: len(b) // 2], "not a readable checkpoint"),
    (lambda b: os.urandom(len(b)), "not a readable checkpoint"),
    (lambda b: b"PK\x03\x04" + b[4:100], "not a readable checkpoint"),
])
def test_a_damaged_checkpoint_names_the_file_and_the_fix(checkpoint, damage, problem):
    checkpoint.write_bytes(damage(checkpoint.read_bytes()))
    with pytest.raises(ValueError, match=problem) as refused:
        runs.load_checkpoint(checkpoint, *vae_pair())
    message = str(refused.value)
    assert str(checkpoint) in message and "Restore it from a copy" in message
    assert f"zoo train --resume --out {checkpoint.parent}" in message


def test_a_checkpoint_of_something_else_is_refused(tmp_path, checkpoint):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a zoo checkpoint"):
        runs.load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"its model weights do not fit the model that "
                       r"config.json describes \(.*size mismatch"):
        runs.load_checkpoint(checkpoint, *vae_pair(latent_dim=3))
    torch.save({"epoch": 1, "model": {}}, tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match=r"missing decoder"):
        runs.load_checkpoint(tmp_path / "nothing.pt", vae_pair()[0])
    with pytest.raises(ValueError, match=r"no guide weights in it"):
        runs.load_checkpoint(tmp_path / "nothing.pt", None, vae_pair()[1])


# ---------------------------------------------------------------------------------- config
@pytest.fixture
def config(tmp_path):
    model, guide = vae_pair()
    return runs.write_config(tmp_path, model, guide, {"name": "digits", "options": {}},
                             {"epochs": 2})


def test_the_config_records_the_versions_that_wrote_it(config):
    assert config["versions"]["zoo"] == zoo.__version__
    assert config["versions"]["pyro"] and config["versions"]["torch"] == torch.__version__


def test_a_current_config_checks_and_keeps_its_values(config, tmp_path):
    assert runs.check_config(runs.read_config(tmp_path), tmp_path) == config


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(notes="x"), "unknown key 'notes'"),
    (lambda c: c.pop("guide"), "no 'guide' entry"),
    (lambda c: c.update(model="vea"), "Unknown model 'vea'"),
    (lambda c: c["model_config"].update(latnet_dim=3), "did you mean 'latent_dim'"),
    (lambda c: c["guide_options"].update(num_flows=2), "has no option 'num_flows'"),
    (lambda c: c["model_config"].update(latent_dim="two"), "latent_dim must be an integer"),
    (lambda c: c["data"].update(path="x"), "data entry 'path'"),
    (lambda c: c.update(model_config=[]), "'model_config' must be a JSON object"),
])
def test_a_config_with_a_bad_key_is_refused_by_name(config, tmp_path, edit, message):
    edit(config)
    with pytest.raises(ValueError, match=message) as refused:
        runs.check_config(config, tmp_path)
    assert str(tmp_path / runs.CONFIG) in str(refused.value)


def test_a_missing_option_takes_this_versions_default_or_is_refused_for_older_ones(config,
                                                                                    tmp_path):
    del config["model_config"]["activation"]
    assert "activation" not in runs.check_config(dict(config), tmp_path)["model_config"]
    config["versions"] = {"pyro": "1.9.1"}  # as runs before zoo 0.2.0 recorded it
    with pytest.raises(ValueError, match=r"model_config has no 'activation' \(written by zoo "
                       r"0\.2\.0 or earlier.*add \"activation\": VALUE"):
        runs.check_config(config, tmp_path)


def test_an_old_ctm_run_loads_with_the_documented_defaults_of_its_version(tmp_path):
    """A CTM config from before ``decoder``, ``prior_warmup`` and ``prior_form`` existed, and
    its checkpoint with the warm-up counter buffer and without ``prior_learning``."""
    model = get_model("ctm", input_dim=12, num_topics=3, decoder="mixture", prior_warmup=0.0,
                      prior_form="full")
    guide = get_guide("diagonal_normal", model, hidden_dims=(4,))
    config = {"model": "ctm", "guide": "diagonal_normal", "data": {"name": "reuters"},
              "model_config": {k: v for k, v in runs.jsonable(model.config).items()
                               if k not in ("decoder", "prior_warmup", "prior_form")},
              "guide_options": runs.jsonable(guide.options), "train": {},
              "versions": {"pyro": "1.9.1"}}
    checked = runs.check_config(config, tmp_path)
    assert {k: checked["model_config"][k] for k in ("decoder", "prior_warmup", "prior_form")} \
        == {"decoder": "mixture", "prior_warmup": 0.0, "prior_form": "full"}
    state = model.state_dict()
    state["docs_seen"] = torch.tensor(1000)
    del state["prior_learning"]
    runs.atomic_save({"model": state, "guide": guide.state_dict(), "epoch": 5}, tmp_path / "c.pt")
    rebuilt = get_model("ctm", **checked["model_config"])
    runs.load_checkpoint(tmp_path / "c.pt", rebuilt, get_guide("diagonal_normal", rebuilt,
                                                               **checked["guide_options"]))
    assert bool(rebuilt.prior_learning)  # the prior was learned from the first step then
    for key, value in model.state_dict().items():
        if key != "prior_learning":
            assert torch.equal(rebuilt.state_dict()[key], value), key


def test_an_old_graphbtm_run_loads_as_the_endpoint_form_it_trained(tmp_path):
    """A GraphBTM config from before ``likelihood`` and ``topic_step`` existed (the endpoint
    form, its topics fitted by the gradient), and its checkpoint without the ``topics_seeded``
    buffer: rebuilt as the endpoint form, weights and BatchNorm statistics as saved, and no
    seeding on the next step."""
    model = get_model("gbtm", input_dim=12, num_topics=3, likelihood="endpoints")
    guide = get_guide("gcn_normal", model, gcn_dim=4, hidden_dims=(4,))
    config = {"model": "gbtm", "guide": "gcn_normal", "data": {"name": "fortunes"},
              "model_config": {k: v for k, v in runs.jsonable(model.config).items()
                               if k not in ("likelihood", "topic_step")},
              "guide_options": runs.jsonable(guide.options), "train": {},
              "versions": {"pyro": "1.9.1"}}
    checked = runs.check_config(config, tmp_path)
    assert checked["model_config"]["likelihood"] == "endpoints"
    assert checked["model_config"]["topic_step"] == "gradient"
    state = model.state_dict()
    del state["topics_seeded"]
    runs.atomic_save({"model": state, "guide": guide.state_dict(), "epoch": 5}, tmp_path / "c.pt")
    rebuilt = get_model("gbtm", **checked["model_config"])
    runs.load_checkpoint(tmp_path / "c.pt", rebuilt, get_guide("gcn_normal", rebuilt,
                                                               **checked["guide_options"]))
    assert bool(rebuilt.topics_seeded)
    for key, value in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value), key


# ------------------------------------------------------------------------------------ data
def test_a_data_file_is_recorded_by_absolute_path_and_content_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pixels.npy").write_bytes(b"not really")
    (tmp_path / "words.txt").write_text("a\nb\n")
    spec = runs.data_spec("pixels.npy", {"vocab": "words.txt", "seed": 1})
    assert spec["name"] == str(tmp_path / "pixels.npy")
    assert spec["sha256"] == hashlib.sha256(b"not really").hexdigest()
    assert spec["options"] == {"vocab": str(tmp_path / "words.txt"), "seed": 1}
    assert runs.data_spec("digits") == {"name": "digits", "options": {}}


def test_a_folder_is_fingerprinted_by_its_files(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    before = runs.fingerprint(tmp_path)
    (tmp_path / "b").write_bytes(b"2")
    assert runs.fingerprint(tmp_path) != before


def test_changed_or_missing_data_is_said_plainly(tmp_path):
    import numpy as np

    path = tmp_path / "pixels.npy"
    np.save(path, np.eye(4, dtype=np.float32))
    spec = runs.data_spec(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runs.load_data(spec)  # unchanged: no warning
    np.save(path, np.eye(4, dtype=np.float32)[::-1])
    with pytest.warns(runs.DataChangedWarning, match="changed since the run was trained"):
        runs.load_data(spec)
    path.unlink()
    with pytest.raises(ValueError, match="is not there any more.*data.name"):
        runs.load_data(spec, tmp_path)
    with pytest.raises(ValueError, match="relative to the folder the run was trained in"):
        runs.load_data({"name": "gone/pixels.npy", "options": {}}, tmp_path)


def test_a_place_that_cannot_be_written_is_refused(tmp_path):
    import shutil
    import tempfile
    from pathlib import Path

    from tests.cli.helpers import unwritable

    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        runs.check_writable(tmp_path / "file" / "run")
    shared = Path(tempfile.mkdtemp())  # world-readable, as unwritable() may look as nobody
    shared.chmod(0o755)
    try:
        with unwritable(shared), pytest.raises(ValueError, match="cannot write there"):
            runs.check_writable(shared / "run")
        runs.check_writable(shared / "run")  # writable again
    finally:
        shutil.rmtree(shared)


def test_holding_a_run_and_clearing_it(tmp_path):
    assert not runs.holds_run(tmp_path)
    for name in (*runs.RUN_FILES, "topics.png", "checkpoint.pt.abcd0123.tmp", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert runs.holds_run(tmp_path)
    runs.clear_run(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_build_uses_the_models_default_guide_options():
    data = Dataset("toy", TensorSplit(torch.rand(8, 20)), TensorSplit(torch.rand(4, 20)), "text")
    model, guide = runs.build("prodlda", None, data, {"num_topics": 3})
    assert guide.options["batch_norm"] == "shift" and model.config["input_dim"] == 20


def test_rng_states_come_back_on_the_cpu_wherever_the_checkpoint_is_mapped(tmp_path):
    """The engine loads a checkpoint onto its device; torch restores RNG states only from CPU
    byte tensors, so they are moved back (a resume on a GPU would fail otherwise)."""
    runs.atomic_save({"epoch": 1, "rng": runs.rng_state(torch.Generator())}, tmp_path / "c.pt")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = runs.load_checkpoint(tmp_path / "c.pt", map_location=device)
    assert ckpt["rng"]["torch"].device.type == "cpu" and ckpt["rng"]["data"].device.type == "cpu"
    runs.set_rng_state(ckpt["rng"], torch.Generator())
