"""``zoo train --resume`` continues the run that ``config.json`` describes and records what it
changed; an existing run is not overwritten unless asked; run folders travel (absolute data
paths with a content hash, files readable as the umask says); a diverged run says only what is
true and keeps a checkpoint it can be resumed from with a smaller ``--lr``."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from tests.cli.helpers import zoo
from zoo import cli, runs
from zoo.data.text_formats import save_npz_corpus

TINY = ["--model-opt", "hidden_dims=[8]", "--model-opt", "latent_dim=2", "--guide-opt",
        "hidden_dims=[8]", "--batch-size", "256", "--quiet"]
CLOCKS = ("seconds", "cpu_seconds", "points_per_second")


@pytest.fixture(autouse=True)
def no_figures(monkeypatch):
    """The figures (seconds of matplotlib per run) are not what these tests are about."""
    monkeypatch.setattr(cli, "write_figures", lambda *args: None)


def train(out, *extra, epochs=2, model="vae"):
    cli.main(["train", model, "--epochs", str(epochs), *TINY, "--out", str(out), *extra])


def state(run):
    ckpt = runs.load_checkpoint(run / runs.CHECKPOINT)
    return ckpt, [{k: v for k, v in h.items() if k not in CLOCKS} for h in ckpt["history"]]


def same_weights(a, b) -> bool:
    return all(torch.equal(a[part][k], b[part][k]) for part in ("model", "guide")
               for k in a[part])


def test_resume_continues_exactly_and_config_json_says_what_happened(tmp_path):
    train(tmp_path / "straight", "--seed", "4", epochs=3)
    train(tmp_path / "split", "--seed", "4", epochs=1)
    cli.main(["train", "--resume", "--out", str(tmp_path / "split"), "--epochs", "3", "--quiet"])
    (straight, h_straight), (split, h_split) = state(tmp_path / "straight"), \
        state(tmp_path / "split")
    assert same_weights(straight, split) and h_straight == h_split
    lines = (tmp_path / "split" / runs.METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    config = runs.read_config(tmp_path / "split")
    assert config["train"]["epochs"] == 3 and config["train"]["seed"] == 4
    assert config["resumes"] == [{"at_epoch": 1, "zoo": config["versions"]["zoo"],
                                  "epochs": [1, 3]}]


def test_resume_takes_every_setting_from_config_json(tmp_path, capsys):
    run = tmp_path / "run"
    train(run, "--elbo", "iwae", "--num-particles", "3", "--lr", "0.02", "--seed", "9",
          "--data-opt", "binarize=true", epochs=1)
    before = runs.read_config(run)
    outcome = zoo(["train", "--resume", "--out", str(run), "--epochs", "2", "--quiet"], capsys)
    assert outcome.code == 0, outcome.output
    ckpt = runs.load_checkpoint(run / runs.CHECKPOINT)
    assert ckpt["epoch"] == 2
    for key, value in (("objective", "iwae"), ("num_particles", 3), ("lr", 0.02), ("seed", 9),
                       ("batch_size", 256)):
        assert ckpt["train_config"][key] == value, key
    after = runs.read_config(run)
    assert {k: v for k, v in after.items() if k not in ("train", "resumes")} == \
        {k: v for k, v in before.items() if k != "train"}
    # the same value again is no change; another one is refused by name
    assert zoo(["train", "--resume", "--out", str(run), "--elbo", "iwae", "--num-particles",
                "3", "--model-opt", "latent_dim=2", "--quiet"], capsys).code == 0
    refused = zoo(["train", "--resume", "--out", str(run), "--num-particles", "5"], capsys)
    assert refused.code == 1 and "--num-particles 5 differs from the run's 3" in refused.output


def test_objective_options_are_recorded_and_kept_on_resume(tmp_path):
    """``--objective-opt jit=true`` reaches the objective (a traced loss trains the same numbers
    as the untraced one) and a resumed run keeps it from config.json."""
    train(tmp_path / "plain", "--seed", "3", "--elbo", "meanfield", epochs=1)
    train(tmp_path / "jit", "--seed", "3", "--elbo", "meanfield", "--objective-opt", "jit=true",
          epochs=1)
    assert runs.read_config(tmp_path / "jit")["train"]["objective_options"] == {"jit": True}
    cli.main(["train", "--resume", "--out", str(tmp_path / "jit"), "--epochs", "2", "--quiet"])
    assert runs.read_config(tmp_path / "jit")["train"]["objective_options"] == {"jit": True}
    plain, jit = state(tmp_path / "plain")[1][0], state(tmp_path / "jit")[1][0]
    assert jit["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-4)
    assert len(state(tmp_path / "jit")[1]) == 2


def test_a_new_lr_on_resume_is_honoured_and_recorded(tmp_path):
    run = tmp_path / "run"
    train(run, "--lr", "0.01", epochs=1)
    cli.main(["train", "--resume", "--out", str(run), "--epochs", "2", "--lr", "0.001",
              "--quiet"])
    ckpt = runs.load_checkpoint(run / runs.CHECKPOINT)
    assert {g["lr"] for g in ckpt["optimizer"]["param_groups"]} == {0.001}
    config = runs.read_config(run)
    assert config["train"]["lr"] == 0.001
    assert config["resumes"][-1]["lr"] == [0.01, 0.001]
    assert config["resumes"][-1]["at_epoch"] == 1


def test_an_existing_run_is_replaced_only_with_overwrite(tmp_path, capsys):
    run = tmp_path / "run"
    train(run)
    (run / "notes.txt").write_text("mine")
    checkpoint = (run / runs.CHECKPOINT).read_bytes()
    refused = zoo(["train", "vae", "--epochs", "1", *TINY, "--out", str(run)], capsys)
    assert refused.code == 1 and "--overwrite" in refused.output
    assert (run / runs.CHECKPOINT).read_bytes() == checkpoint
    train(run, "--overwrite", epochs=1)
    lines = (run / runs.METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]  # not 1, 2, 1
    assert (run / "notes.txt").read_text() == "mine"


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path, capsys):
    train(tmp_path / "straight", epochs=2)
    run = tmp_path / "early"
    train(run, epochs=2)
    for name in (runs.CHECKPOINT, runs.METRICS, runs.SUMMARY):
        (run / name).unlink()
    said = zoo(["evaluate", str(run)], capsys)
    assert said.code == 1 and "no checkpoint.pt yet" in said.output
    assert zoo(["train", "--resume", "--out", str(run), "--quiet"], capsys).code == 0
    assert same_weights(state(tmp_path / "straight")[0], state(run)[0])


@pytest.fixture
def corpus(tmp_path):
    rng = np.random.default_rng(1)
    counts = rng.poisson(0.8, size=(60, 25))
    counts[:, 0] += 1
    path = tmp_path / "data" / "corpus.npz"
    save_npz_corpus(path, counts, [f"w{i}" for i in range(25)])
    return path


def test_a_run_folder_travels_and_notices_changed_data(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.chdir(corpus.parent)
    run = tmp_path / "runs" / "prodlda"
    cli.main(["train", "prodlda", "--data", "corpus.npz", "--epochs", "1", "--model-opt",
              "num_topics=3", "--out", str(run), "--quiet"])
    data = runs.read_config(run)["data"]
    assert data["name"] == str(corpus) and len(data["sha256"]) == 64
    moved = tmp_path / "elsewhere" / "prodlda"
    shutil.move(run, moved)
    monkeypatch.chdir(tmp_path)  # another folder, another place for the run
    for command in (["evaluate", str(moved)], ["topics", str(moved), "--num-words", "3"]):
        outcome = zoo(command, capsys)
        assert outcome.code == 0 and "warning" not in outcome.output, outcome.output
    counts = np.ones((60, 25), dtype=np.int64)
    save_npz_corpus(corpus, counts, [f"w{i}" for i in range(25)])
    outcome = zoo(["evaluate", str(moved)], capsys)
    assert outcome.code == 0
    assert f"warning: {corpus} changed since the run was trained" in outcome.output
    assert outcome.output.count("warning") == 1  # one line, no source location


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_run_files_get_the_permissions_the_umask_gives(tmp_path, mask):
    previous = os.umask(mask)
    try:
        train(tmp_path / "run", epochs=1)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes and set(modes.values()) == {0o666 & ~mask}, modes


# --------------------------------------------------------------------------- divergence
def test_a_gaussian_vae_at_lr_1e6_keeps_its_initial_state_and_resumes_with_a_smaller_lr(
        tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "vae", "--model-opt", "likelihood=gaussian", "--data-opt",
            "binarize=false", "--epochs", "2", "--lr", "1e6", "--out", str(run), "--quiet"]
    outcome = zoo(args, capsys)
    assert outcome.code == 1 and "Traceback" not in outcome.output
    assert outcome.last_line.startswith("error: ") and "at epoch 1" in outcome.last_line
    assert f"The last good checkpoint is kept ({run / runs.CHECKPOINT}, the initial state)" \
        in outcome.last_line
    assert runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == 0
    resumed = zoo(["train", "--resume", "--out", str(run), "--lr", "1e-3", "--quiet"], capsys)
    assert resumed.code == 0, resumed.output
    assert runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == 2
    assert runs.read_config(run)["resumes"][-1]["lr"] == [1e6, 1e-3]


def test_a_bernoulli_vae_whose_loss_explodes_to_a_finite_number_stops(tmp_path, capsys):
    run = tmp_path / "run"
    outcome = zoo(["train", "vae", "--epochs", "3", "--lr", "1e6", "--out", str(run),
                   "--quiet"], capsys)
    assert outcome.code == 1 and "Traceback" not in outcome.output
    line = outcome.last_line
    assert line.startswith("error: training diverged: the held-out ELBO became") and \
        "after epoch 1" in line and "the untrained model's" in line, line
    assert "the initial state" in line and "--lr SMALLER" in line
    assert runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"] == 0
    assert not (run / runs.SUMMARY).exists()


def test_prodlda_at_lr_1e6_says_which_epoch_the_checkpoint_holds(tmp_path, capsys):
    run = tmp_path / "run"
    outcome = zoo(["train", "prodlda", "--data", "reuters", "--model-opt", "num_topics=5",
                   "--epochs", "2", "--lr", "1e6", "--out", str(run), "--quiet"], capsys)
    assert outcome.code == 1 and "Traceback" not in outcome.output
    line = outcome.last_line
    assert line.startswith("error: ") and "epoch" in line and str(run / runs.CHECKPOINT) in line
    held = runs.load_checkpoint(run / runs.CHECKPOINT)["epoch"]
    assert (f"epoch {held}" if held else "the initial state") in line, line


def test_the_divergence_guard_leaves_the_training_as_fit_trains_it(tmp_path):
    """``zoo train`` checks each evaluation without drawing from the run's random streams: its
    weights are those of ``fit`` with the CLI's per-epoch metrics."""
    import pyro

    from zoo.train import TrainConfig, fit

    train(tmp_path / "cli", "--seed", "2", "--elbo", "iwae", "--num-particles", "2", epochs=2)
    data = runs.load_data({"name": "digits", "options": {}})
    pyro.set_rng_seed(2)
    model, guide = runs.build("vae", None, data, {"hidden_dims": [8], "latent_dim": 2},
                              {"hidden_dims": [8]})
    fit(model, guide, data, TrainConfig(objective="iwae", num_particles=2, epochs=2,
                                        batch_size=256, seed=2, validate=False),
        out_dir=tmp_path / "fit", progress=False, extra_metrics=cli.per_epoch_metrics)
    assert same_weights(state(tmp_path / "cli")[0], state(tmp_path / "fit")[0])


def test_a_nested_vi_run_resumes_with_its_settings_and_records_a_new_lr(tmp_path, capsys):
    run = tmp_path / "nvi"
    base = ["nvi", "train", "--target", "banana", "--num-levels", "2", "--eval-every", "10",
            "--eval-batches", "2", "--eval-particles", "8", "--quiet", "--out", str(run)]
    assert zoo([*base, "--iterations", "10"], capsys).code == 0
    resumed = zoo(["nvi", "train", "--resume", "--out", str(run), "--iterations", "20", "--lr",
                   "5e-4", "--quiet"], capsys)
    assert resumed.code == 0, resumed.output
    config = runs.read_config(run)
    assert config["iterations"] == 20 and config["lr"] == 5e-4 and config["target"] == "banana"
    assert {"iterations": [10, 20], "lr": [1e-3, 5e-4]}.items() <= config["resumes"][-1].items()
    assert runs.load_checkpoint(run / runs.CHECKPOINT)["history"][-1]["iteration"] == 20
