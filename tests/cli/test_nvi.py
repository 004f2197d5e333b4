import argparse
import json

import pytest

from zoo.cli_nvi import add_parser


def _parse(argv):
    parser = argparse.ArgumentParser(prog="zoo")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize("objective, resample, schedule", [("nvi-rkl", True, "learned"),
                                                           ("avo", False, "linear")])
def test_train_then_evaluate_writes_a_run_folder(tmp_path, capsys, objective, resample, schedule):
    out = tmp_path / "run"
    args = _parse(["nvi", "train", "--target", "banana", "--num-levels", "3", "--iterations", "20",
                   "--eval-every", "10", "--eval-batches", "3", "--eval-particles", "16",
                   "--objective", objective, "--resampler", "multinomial", "--schedule", schedule,
                   "--quiet", "--out", str(out),
                   "--resample" if resample else "--no-resample"])
    summary = args.func(args)
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl", "summary.json", "levels.png"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [10, 20]
    assert 0 < rows[-1]["ess_percent"] <= 100 and len(rows[-1]["betas"]) == 3
    assert summary["exact_log_z"] == pytest.approx(2.531, abs=1e-3)  # log(2 pi 2)
    assert json.loads((out / "config.json").read_text())["num_particles"] == 96
    assert not list(out.glob("*.tmp"))
    capsys.readouterr()
    args = _parse(["nvi", "evaluate", str(out), "--eval-batches", "2", "--eval-particles", "8"])
    result = args.func(args)
    assert result["iteration"] == 20 and "resampling" in result["protocol"]
    assert json.loads(capsys.readouterr().out)["log_z"] == pytest.approx(result["log_z"])


def test_resume_continues_exactly(tmp_path, capsys):
    import torch

    def run(out, iterations, *extra):
        args = _parse(["nvi", "train", "--target", "banana", "--num-levels", "3", "--resample",
                       "--schedule", "learned", "--iterations", str(iterations),
                       "--eval-every", "10", "--eval-batches", "2", "--eval-particles", "16",
                       "--quiet", "--out", str(tmp_path / out), *extra])
        return args.func(args)

    run("straight", 30)
    run("split", 10)
    with open(tmp_path / "split" / "metrics.jsonl", "a") as f:  # a row the checkpoint never saw
        f.write(json.dumps({"iteration": 15, "log_z": 0.0}) + "\n")
    run("split", 30, "--resume")
    capsys.readouterr()
    straight, split = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
                       for name in ("straight", "split"))
    assert split["history"][-1]["iteration"] == 30
    for a, b in zip(straight["programs"].values(), split["programs"].values()):
        assert torch.equal(a, b)
    clocks = ("seconds", "cpu_seconds", "points_per_second")
    rows = [[{k: v for k, v in json.loads(line).items() if k not in clocks}
             for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("straight", "split")]
    assert [r["iteration"] for r in rows[1]] == [10, 20, 30]
    assert rows[0] == rows[1]


def test_resume_without_a_checkpoint_says_so(tmp_path):
    args = _parse(["nvi", "train", "--resume", "--quiet", "--out", str(tmp_path / "none")])
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        args.func(args)
