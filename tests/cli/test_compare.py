"""``zoo compare``: cells are run folders trained alike (in turns, exactly as ``zoo train``
would), a rerun skips finished cells and resumes unfinished ones, bad input is refused before
any training, run folders on other data are refused, and the report has its tables, figures and
posterior draws. Tiny networks on digits: the whole file takes seconds."""

import argparse
import json
import math
from pathlib import Path

import arviz as az
import pytest
import torch

from zoo import cli, cli_compare, compare_train, runs
from zoo.compare import compare
from zoo.compare_eval import Evaluation

TINY = ["--model-opt", "hidden_dims=[8]", "--model-opt", "latent_dim=2",
        "--guide-opt", "hidden_dims=[8]", "--guide-opt", "num_flows=1", "--batch-size", "256"]
SCORING = ["--num-particles", "20", "--chunk-size", "20", "--posterior-samples", "50",
           "--refine", "50", "--refine-points", "20",
           "--posterior-particles", "50", "--no-cell-figures", "--quiet"]
TINY_API = dict(model_options={"hidden_dims": [8], "latent_dim": 2},
                guide_options={"hidden_dims": [8], "num_flows": 1},
                train_options={"batch_size": 256},
                evaluation=Evaluation(num_particles=20, chunk_size=20, posterior_points=0,
                                      refine_points=0),
                cell_figures=False, progress=False)


def run(*argv):
    """``zoo compare ARGV`` through a parser built as zoo.cli builds it, errors as zoo.cli.main
    reports them."""
    parser = argparse.ArgumentParser(prog="zoo")
    cli_compare.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *map(str, argv)])
    try:
        return args.func(args)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def files(folder) -> dict:
    """Every file under ``folder``: its bytes and modification time."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(folder).rglob("*")
            if p.is_file()}


def weights(run_dir) -> dict:
    ckpt = torch.load(Path(run_dir) / runs.CHECKPOINT, weights_only=False)
    return {f"{part}.{k}": v for part in ("model", "guide") for k, v in ckpt[part].items()}


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """2 guides x 2 objectives x 2 seeds, 2 epochs each."""
    import pyro

    out = tmp_path_factory.mktemp("compare") / "grid"
    with pyro.settings.context(module_local_params=True):
        result = run("vae", "--guides", "diagonal_normal", "householder", "--elbo", "trace",
                     "iwae:2", "--seeds", "0", "1", "--epochs", "2", *TINY, *SCORING,
                     "--out", out)
    return out, result


def test_every_cell_is_a_run_folder_and_the_report_has_tables_and_figures(grid, capsys):
    out, result = grid
    cells = sorted(p.parent for p in out.rglob(runs.CONFIG))
    assert len(cells) == 8
    iwae = runs.read_config(out / "vae" / "householder" / "iwae_K2" / "seed1")
    assert iwae["guide"] == "householder" and iwae["guide_options"]["num_flows"] == 1
    assert iwae["train"]["objective"] == "iwae" and iwae["train"]["num_particles"] == 2
    assert iwae["train"]["seed"] == 1 and iwae["train"]["epochs"] == 2
    for cell in cells:
        for name in (runs.CHECKPOINT, runs.METRICS, runs.SUMMARY):
            assert (cell / name).stat().st_size > 0, (cell, name)
    for name in ("report.md", "report.json", "training_curves.png", "log_likelihood.png",
                 "posterior_forest.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert [r["configuration"] for r in report["configurations"]] == [
        "vae · diagonal_normal · trace", "vae · diagonal_normal · iwae K=2",
        "vae · householder · trace", "vae · householder · iwae K=2"]
    assert len(report["cells"]) == 8 and report["primary_metric"] == "is_log_likelihood"
    paired = report["configurations"][2]["vs_reference"]["is_log_likelihood"]
    assert paired["n"] == 2 and paired["se"] > 0 and "points" in paired
    text = (out / "report.md").read_text()
    assert "CPU s/epoch" in text and "az.compare" in text and "agree" in text
    # the report's numbers are the cells' own: each cell's summary.json, their mean and sd
    # over seeds, and that mean ± sd in report.md's row of the configuration
    by_id = {c["id"]: c for c in report["cells"]}
    for seed in (0, 1):
        summary = json.loads((out / "vae" / "householder" / "trace" / f"seed{seed}"
                              / runs.SUMMARY).read_text())
        mine = by_id[f"vae.householder.trace.seed{seed}"]
        for key in ("heldout_elbo", "is_log_likelihood", "ess_mean", "inference_gap"):
            assert mine[key] == pytest.approx(summary[key]), key
    values = [by_id[f"vae.householder.trace.seed{s}"]["is_log_likelihood"] for s in (0, 1)]
    stats = report["configurations"][2]["metrics"]["is_log_likelihood"]
    assert stats["mean"] == pytest.approx(sum(values) / 2)
    assert stats["sd"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
    row = next(line for line in text.splitlines()
               if line.startswith("| vae | householder | trace | 2 |"))
    assert f"{stats['mean']:.3f} ± {stats['sd']:.3f}" in row
    reference = [by_id[f"vae.diagonal_normal.trace.seed{s}"]["is_log_likelihood"]
                 for s in (0, 1)]
    assert paired["differences"] == pytest.approx([v - r for v, r in zip(values, reference)])
    table = result.table  # what a notebook shows: the same numbers as report.json
    assert list(table.index) == [r["configuration"] for r in report["configurations"]]
    assert table["agree"].iloc[0] == "reference"
    flow = table.loc["vae · householder · trace"]
    assert flow["is_log_likelihood"] == pytest.approx(stats["mean"])
    assert flow["vs_first"] == pytest.approx(paired["mean"])
    assert flow["agree"] == f"{paired['agree']}/2"
    # the amortization gap: each cell's held-out points refined per point at the fixed model
    for cell in report["cells"]:
        assert cell["refine_steps"] == 50 and cell["refine_points"] == 20
        assert cell["amortization_gap"] > 0, cell["id"]  # refining never loses to the encoder
        assert math.isfinite(cell["approximation_gap"])
    assert "amortization gap" in text and "approximation gap" in text
    # `zoo evaluate` reads a cell like any run
    cli.main(["evaluate", str(out / "vae" / "diagonal_normal" / "trace" / "seed0")])
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


def test_posterior_draws_are_arviz_inference_data(grid):
    out, result = grid
    draws = result.posteriors["vae.householder.trace.seed0"]
    assert dict(draws["posterior"].posterior["z"].sizes) == {"chain": 1, "draw": 50, "data": 3,
                                                             "z_dim_0": 2}
    assert dict(draws["guide"].posterior["z"].sizes) == dict(draws["posterior"].posterior["z"]
                                                             .sizes)
    saved = az.from_netcdf(out / "posterior" / "vae.householder.trace.seed0.posterior.nc")
    assert torch.equal(torch.as_tensor(saved.posterior["z"].values),
                       torch.as_tensor(draws["posterior"].posterior["z"].values))
    assert "importance_ess" in saved.sample_stats


def test_a_cell_trained_in_turns_is_the_run_trained_in_one_go(grid, tmp_path):
    import pyro

    from zoo.data import load
    from zoo.train import TrainConfig, fit

    out, _ = grid
    cell = out / "vae" / "householder" / "iwae_K2" / "seed1"
    config = runs.read_config(cell)
    pyro.set_rng_seed(1)  # as the comparison seeds a cell: the initial weights from its seed
    data = load("digits")
    model, guide = runs.build("vae", "householder", data, {"hidden_dims": [8], "latent_dim": 2},
                              {"hidden_dims": [8], "num_flows": 1})
    fit(model, guide, data, TrainConfig(**config["train"]), out_dir=tmp_path / "t",
        progress=False)
    assert same_weights(cell, tmp_path / "t")  # bit for bit, one epoch per turn or not
    # and its config.json is the one `zoo train` writes for the same options
    cli.main(["train", "vae", "--guide", "householder", "--elbo", "iwae", "--num-particles", "2",
              "--epochs", "2", "--seed", "1", *TINY, "--out", str(tmp_path / "z"), "--quiet"])
    theirs = runs.read_config(tmp_path / "z")
    assert {k: v for k, v in config.items() if k != "versions"} == \
        {k: v for k, v in theirs.items() if k not in ("versions", "resumes")}


def test_rerunning_the_command_trains_and_rewrites_nothing(grid, monkeypatch):
    out, _ = grid
    before = {p: v for p, v in files(out).items() if "vae" in p.parts}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(compare_train, "fit", no_training)
    run("vae", "--guides", "diagonal_normal", "householder", "--elbo", "trace", "iwae:2",
        "--seeds", "0", "1", "--epochs", "2", *TINY, *SCORING, "--out", out)
    after = {p: v for p, v in files(out).items() if "vae" in p.parts}
    assert after == before


def test_other_settings_in_an_existing_cell_are_refused_before_anything_changes(grid):
    out, _ = grid
    before = files(out)
    with pytest.raises(SystemExit, match=r"other settings .*train.lr: 0.001 there, 0.01 here"):
        run("vae", "--guides", "diagonal_normal", "householder", "--elbo", "trace", "iwae:2",
            "--seeds", "0", "1", "--epochs", "2", *TINY, *SCORING, "--lr", "0.01", "--out", out)
    assert files(out) == before


def test_an_interrupted_comparison_skips_the_finished_cell_and_resumes_the_other(
        tmp_path, monkeypatch):
    def stop_when_the_first_cell_is_done(cell, history):
        if cell.guide == "diagonal_normal" and len(history) == 3:
            raise KeyboardInterrupt

    kwargs = dict(guides=["diagonal_normal", "householder"], epochs=3, **TINY_API)
    with pytest.raises(KeyboardInterrupt):
        compare("vae", out=tmp_path / "cut", callback=stop_when_the_first_cell_is_done, **kwargs)
    done = tmp_path / "cut" / "vae" / "diagonal_normal" / "trace" / "seed0"
    cut = tmp_path / "cut" / "vae" / "householder" / "trace" / "seed0"
    assert len(torch.load(cut / runs.CHECKPOINT, weights_only=False)["history"]) == 2
    finished = files(done)

    calls = []
    real_fit = compare_train.fit
    monkeypatch.setattr(compare_train, "fit", lambda *a, **k: calls.append(k) or real_fit(*a, **k))
    compare("vae", out=tmp_path / "cut", **kwargs)
    assert [(Path(c["out_dir"]), c["epochs"], c["resume"]) for c in calls] == [(cut, 3, True)]
    # byte for byte, not even rewritten (the rerun adds the scores it had no time for)
    assert {p: files(done)[p] for p in finished} == finished
    assert sorted(p.name for p in finished) == [runs.CHECKPOINT, runs.CONFIG, runs.METRICS]
    # and the resumed cell is the cell an uninterrupted comparison trains
    compare("vae", out=tmp_path / "whole", **kwargs)
    assert same_weights(cut, tmp_path / "whole" / "vae" / "householder" / "trace" / "seed0")


def test_a_seconds_budget_takes_turns_warms_up_and_resumes(tmp_path, capsys):
    turns = []

    def stop_when_one_is_done(cell, history):
        turns.append((cell.guide, sum(h["seconds"] for h in history)))
        if sum(h["seconds"] for h in history) >= 0.3:
            raise KeyboardInterrupt

    kwargs = dict(guides=["diagonal_normal", "householder"], budget_seconds=0.3,
                  kl_warmup_fraction=0.5, **{**TINY_API, "progress": None})
    with pytest.raises(KeyboardInterrupt):
        compare("vae", out=tmp_path, callback=stop_when_one_is_done, **kwargs)
    assert {turns[0][0], turns[1][0]} == {"diagonal_normal", "householder"}  # in turns
    first, seconds = turns[-1]
    other = "householder" if first == "diagonal_normal" else "diagonal_normal"
    behind = max(s for g, s in turns if g == other)
    assert behind < 0.3 <= seconds
    done, cut = (tmp_path / "vae" / g / "trace" / "seed0" for g in (first, other))
    finished, history = files(done), json.loads(json.dumps(
        torch.load(cut / runs.CHECKPOINT, weights_only=False)["history"]))

    result = compare("vae", out=tmp_path, **kwargs)
    assert {p: files(done)[p] for p in finished} == finished
    resumed = torch.load(cut / runs.CHECKPOINT, weights_only=False)["history"]
    assert json.loads(json.dumps(resumed[:len(history)])) == history  # continued, not redone
    assert sum(h["seconds"] for h in resumed) >= 0.3
    assert resumed[0]["kl_weight"] < 1.0 == resumed[-1]["kl_weight"]  # warm-up over seconds
    assert "0.3 s of training per cell" in result.markdown and "KL warm-up" in result.markdown
    err = capsys.readouterr().err  # off a terminal: lines with the cells done and an ETA
    assert "compare:" in err and "ETA" in err and "cells done" in err
    assert {c["cpu_seconds_per_epoch"] > 0 for c in result.report["cells"]} == {True}


def test_cells_taking_turns_under_a_seconds_budget_learn_what_one_fit_learns(tmp_path):
    """The turns decide when a cell trains, not what it learns: the cell is, bit for bit, the
    run that one ``fit`` of as many epochs makes from the same seed."""
    import pyro

    from zoo.data import load
    from zoo.train import TrainConfig, fit

    compare("vae", out=tmp_path / "cmp", guides=["diagonal_normal", "householder"],
            budget_seconds=0.2, **TINY_API)
    cell = tmp_path / "cmp" / "vae" / "householder" / "trace" / "seed0"
    config = runs.read_config(cell)
    assert config["train"]["max_seconds"] == 0.2
    epochs = len(torch.load(cell / runs.CHECKPOINT, weights_only=False)["history"])
    assert epochs >= 1
    pyro.set_rng_seed(0)
    data = load("digits")
    model, guide = runs.build("vae", "householder", data, TINY_API["model_options"],
                              TINY_API["guide_options"])
    fit(model, guide, data, TrainConfig(**config["train"]), epochs=epochs, max_seconds=None,
        out_dir=tmp_path / "direct", progress=False)
    assert same_weights(cell, tmp_path / "direct")


def test_comparing_run_folders_without_out_writes_nothing(grid):
    out, _ = grid
    cells = [out / "vae" / g / "trace" / "seed0" for g in ("diagonal_normal", "householder")]
    before = files(out)
    result = run(*cells, *SCORING, "--posterior-points", "0")
    assert result.out is None and "## Every cell" in result.markdown
    assert result.markdown.splitlines()[2].startswith("Runs: ")
    assert any(line.startswith("Data: `digits`") for line in result.markdown.splitlines())
    assert files(out) == before


@pytest.mark.parametrize("argv,message", [
    (["vae", "--guides", "nope"], "Unknown guide 'nope'. Registered guides:"),
    (["vae", "--guides", "diagonal_normal", "dirichlet"],
     "Guide 'dirichlet' does not fit model 'vae': .* Guides that fit it: chain_normal, ctf, "
     "diagonal_normal, householder, low_rank_normal"),
    (["vae", "lda", "--guides", "diagonal_normal"],
     "does not fit model 'lda'.* Guides that fit it: dirichlet, logistic_normal"),
    (["vae", "--elbo", "trace", "nope:2"], "Unknown objective 'nope'. Choose one of:"),
    (["vae", "--elbo", "iwae:0"], "NAME:K with K particles >= 1"),
    (["vae", "--model-opt", "nope=1"], "no model of this comparison .vae. takes the option 'nope'"),
    (["vae", "--guides", "diagonal_normal", "--guide-opt", "num_flows=2"],
     "no guide of this comparison .diagonal_normal. takes the option 'num_flows'"),
    (["nothere"], "nothere: neither a run folder .no config.json. nor a model"),
    (["vae", "--refine-points", "-1"], "evaluation refine_points must be an integer >= 0"),
    (["vae", "--refine", "-5"], "evaluation refine_steps must be an integer >= 0"),
])
def test_bad_input_is_refused_before_any_training(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        run(*argv, "--epochs", "1", "--out", tmp_path / "x", "--quiet")
    assert not (tmp_path / "x").exists()


def test_a_budget_is_required(tmp_path):
    with pytest.raises(SystemExit, match="--epochs N or --budget-seconds S"):
        run("vae", "--out", tmp_path / "x")


def test_run_folders_compare_and_other_data_is_refused_with_the_reason(grid, tmp_path):
    out, _ = grid
    cells = [out / "vae" / g / "trace" / f"seed{s}" for g in ("householder", "diagonal_normal")
             for s in (0, 1)]
    result = run(*cells, *SCORING, "--posterior-points", "0", "--out", tmp_path / "ab")
    rows = result.report["configurations"]
    assert [r["configuration"] for r in rows] == ["vae · householder · trace",
                                                  "vae · diagonal_normal · trace"]
    assert rows[1]["vs_reference"]["is_log_likelihood"]["n"] == 2
    with pytest.raises(SystemExit, match="--guides train a comparison"):
        run(*cells, "--guides", "householder")
    with pytest.raises(SystemExit, match="same configuration with the same seed 0"):
        run(cells[0], cells[0])
    cli.main(["train", "vae", "--epochs", "1", "--data-opt", "seed=1", "--model-opt",
              "hidden_dims=[8]", "--model-opt", "latent_dim=2", "--guide-opt", "hidden_dims=[8]",
              "--out", str(tmp_path / "split1"), "--quiet"])
    with pytest.raises(SystemExit, match=r"trained on other data than .*seed 1.* one data split"):
        run(cells[0], tmp_path / "split1")


def test_topic_models_get_perplexity_and_their_topics_side_by_side(tmp_path):
    scoring = [a for a in SCORING if a != "--no-cell-figures"]  # one test with the cells' own
    result = run("lda", "--guides", "dirichlet", "logistic_normal", "--data", "reuters",
                 "--epochs", "1", "--model-opt", "num_topics=4", "--guide-opt",
                 "hidden_dims=[8]", "--refine", "2", *scoring, "--out", tmp_path)
    for guide in ("dirichlet", "logistic_normal"):  # figures, as zoo train writes them
        for name in ("training_curves.png", "topics.png"):
            assert (tmp_path / "lda" / guide / "trace" / "seed0" / name).stat().st_size > 0
    assert result.report["primary_metric"] == "perplexity_refined"
    rows = result.report["configurations"]
    assert {"perplexity", "perplexity_refined", "amortization_gap", "npmi", "diversity"} <= \
        set(rows[1]["metrics"])
    side = result.report["topics_side_by_side"]
    assert side["configurations"] == ["lda · dirichlet · trace", "lda · logistic_normal · trace"]
    assert len(side["rows"]) == 4 and (tmp_path / "topics.png").stat().st_size > 0
    assert "## Topics side by side" in result.markdown
    assert "Not drawn for lda · dirichlet · trace" in result.markdown  # a global latent


def test_a_diverged_cell_is_reported_and_not_retried_until_its_folder_is_gone(tmp_path,
                                                                              monkeypatch):
    from zoo.train import TrainingDiverged

    real_fit = compare_train.fit
    calls = []

    def diverging(*args, **kwargs):
        calls.append(Path(kwargs["out_dir"]).parts[-3])
        history = real_fit(*args, **kwargs)
        if "householder" in kwargs["out_dir"].parts:  # after the engine kept its checkpoint
            raise TrainingDiverged("Loss became nan at epoch 1, step 3")
        return history

    monkeypatch.setattr(compare_train, "fit", diverging)
    kwargs = dict(guides=["diagonal_normal", "householder"], epochs=2, **TINY_API)
    result = compare("vae", out=tmp_path, **kwargs)
    cells = {c["guide"]: c for c in result.report["cells"]}
    assert cells["householder"]["status"] == "diverged: Loss became nan at epoch 1, step 3"
    assert [r["configuration"] for r in result.report["configurations"]] == [
        "vae · diagonal_normal · trace"]  # no statistics from a diverged cell
    calls.clear()
    compare("vae", out=tmp_path, **kwargs)
    assert calls == []  # a resume would diverge at the same step: not retried
    for name in (runs.CHECKPOINT, runs.CONFIG, runs.METRICS):
        (tmp_path / "vae" / "householder" / "trace" / "seed0" / name).unlink(missing_ok=True)
    monkeypatch.setattr(compare_train, "fit", real_fit)
    result = compare("vae", out=tmp_path, **kwargs)
    assert {c["status"] for c in result.report["cells"]} == {"finished"}
