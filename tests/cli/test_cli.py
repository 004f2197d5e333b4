import inspect
import json

import pytest

from zoo import cli
from zoo.registry import list_models


def run(*argv):
    return cli.main(list(argv))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    import pyro

    with pyro.settings.context(module_local_params=True):
        out = tmp_path_factory.mktemp("run") / "vae"
        run("train", "vae", "--guide", "householder", "--elbo", "meanfield", "--data", "digits",
            "--epochs", "2", "--model-opt", "hidden_dims=[32]", "--model-opt", "latent_dim=4",
            "--guide-opt", "hidden_dims=[32]", "--guide-opt", "num_flows=2", "--out", str(out),
            "--quiet", "--seed", "3")
    return out


def test_train_writes_a_complete_run_folder(trained_run):
    for name in ["config.json", "checkpoint.pt", "metrics.jsonl", "summary.json",
                 "samples.png", "reconstructions.png", "training_curves.png"]:
        assert (trained_run / name).stat().st_size > 0, name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "vae" and config["guide"] == "householder"
    assert config["guide_options"]["num_flows"] == 2 and config["train"]["seed"] == 3
    assert config["train"]["objective"] == "meanfield"
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_evaluate_recomputes_the_heldout_elbo(trained_run, capsys):
    before = json.loads((trained_run / "summary.json").read_text())
    run("evaluate", str(trained_run))
    after = json.loads((trained_run / "summary.json").read_text())
    assert after["epochs"] == 2
    # a fresh Monte Carlo estimate of the same quantity: close, not bit-identical
    assert abs(after["heldout_elbo"] - before["heldout_elbo"]) < 0.5


def test_evaluate_refine_splits_the_inference_gap(trained_run, capsys):
    """On a model that is not a topic model, --refine reports the amortization gap and, beside
    the importance-sampled log p(x), the approximation gap: together the whole inference gap."""
    run("evaluate", str(trained_run), "--refine", "30", "--num-particles", "50",
        "--out", str(trained_run / "refined.json"))
    summary = json.loads(capsys.readouterr().out)
    assert summary["refine_steps"] == 30
    assert summary["amortization_gap"] > 0  # refined per image, never worse than the encoder
    assert summary["approximation_gap"] == pytest.approx(
        summary["is_log_likelihood"] - summary["refined_elbo"])


def test_evaluate_refine_refuses_a_guide_without_local_parameters(tmp_path, capsys):
    import pyro

    with pyro.settings.context(module_local_params=True):
        run("train", "gmm", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "gmm"),
            "--quiet")
        with pytest.raises(SystemExit, match="guide 'categorical' does not expose its local"):
            run("evaluate", str(tmp_path / "gmm"), "--refine", "5")


def test_sample_writes_figures(trained_run, capsys):
    (trained_run / "samples.png").unlink()
    run("sample", str(trained_run), "--num", "20")
    assert (trained_run / "samples.png").stat().st_size > 0


def test_list_names_models_guides_and_defaults(capsys):
    run("list")
    out = capsys.readouterr().out
    assert "vae" in out and "householder" in out and "meanfield" in out


@pytest.mark.parametrize("argv,message", [
    (["train", "nope", "--out", "x"], "Unknown model 'nope'. Registered models:"),
    (["train", "vae", "--elbo", "nope", "--out", "x"], "Unknown objective 'nope'. Choose one of:"),
    (["train", "vae", "--data", "missing.npy", "--out", "x"], "missing.npy: no such file"),
    (["evaluate", "not-a-run"], "not-a-run: not a run folder"),
    (["train", "vae", "--model-opt", "latent_dim", "--out", "x"], "not of the form key=value"),
])
def test_bad_input_exits_with_a_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run(*argv)
    assert message in str(exc.value)


def test_guide_that_does_not_fit_lists_those_that_do(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run("train", "vae", "--guide", "dirichlet", "--out", str(tmp_path / "x"))
    assert "does not fit model 'vae'" in str(exc.value)
    assert "diagonal_normal" in str(exc.value)


def test_topic_model_run_reports_topics_and_ctm_correlations(tmp_path, capsys):
    out = tmp_path / "ctm"
    run("train", "ctm", "--data", "reuters", "--epochs", "1", "--model-opt", "num_topics=5",
        "--out", str(out), "--quiet", "--seed", "0")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["perplexity"] > 1 and -1 <= summary["npmi"] <= 1
    assert (out / "topics.png").exists() and (out / "topic_correlations.png").exists()
    assert "perplexity" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    capsys.readouterr()
    run("topics", str(out), "--format", "json", "--correlations", "--num-words", "4")
    report = json.loads(capsys.readouterr().out)
    assert len(report["topics"]) == 5 and all(len(t) == 4 for t in report["topics"])
    matrix = report["correlations"]["matrix"]
    assert len(matrix) == 5 and all(abs(matrix[i][i] - 1) < 1e-5 for i in range(5))


def test_topics_refuses_a_run_that_is_not_a_topic_model(trained_run):
    with pytest.raises(SystemExit) as exc:
        run("topics", str(trained_run))
    assert "is not a topic model" in str(exc.value)


DOCS = ["the cat sat on the mat with the dog", "stocks fell as markets closed lower today",
        "the dog chased the cat around the mat", "markets rallied and stocks rose higher today"]


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_trains_evaluates_through_the_cli(model, tmp_path):
    """`zoo train` then `zoo evaluate` for every model, on data of the kind it takes."""
    from zoo.registry import find_model

    cls = find_model(model)
    if cls.graph_input:  # needs token order: raw text
        docs = tmp_path / "docs.txt"
        docs.write_text("\n".join(DOCS * 10) + "\n")
        data = [str(docs), "--data-opt", "stop_words=null", "--model-opt", "num_topics=2"]
    elif cls.topic_model:
        size = "num_topics" if "num_topics" in inspect.signature(cls).parameters else "latent_dim"
        data = ["reuters", "--model-opt", f"{size}=5"]
    elif cls().config.get("likelihood") == "bernoulli":
        data = ["digits"]
    else:  # Gaussian observations
        data = ["digits", "--data-opt", "binarize=false"]
    out = tmp_path / "run"
    run("train", model, "--data", *data, "--epochs", "1", "--out", str(out), "--quiet")
    run("evaluate", str(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["heldout_elbo"] < 0
    assert (out / "training_curves.png").exists()


def test_bernoulli_model_on_real_pixels_says_the_fix(tmp_path):
    with pytest.raises(SystemExit) as exc:
        run("train", "vae", "--data", "digits", "--data-opt", "binarize=false", "--out",
            str(tmp_path / "x"))
    assert "needs binary pixels" in str(exc.value) and "likelihood=gaussian" in str(exc.value)
