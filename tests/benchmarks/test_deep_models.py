"""The VAE-vs-DLGM benchmark's bookkeeping: the warm-up schedule in seconds, the pairs it trains
(the VAE once when two guides coincide on one site), and the paired differences per seed."""

import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "deep_models.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("deep_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kl_weight_rises_linearly_then_stays_at_one(bench):
    from zoo.schedules import Progress

    args = Namespace(kl_warmup=0.3, budget=60.0, objective="trace")  # 18 s of warm-up
    warmup = bench.warmup_schedules(args)["kl_weight"]

    def after(seconds):
        return warmup(Progress(step=1, steps_per_epoch=1, seconds=seconds))

    assert after(0.0) == 0.0
    assert after(9.0) == pytest.approx(0.5)
    assert after(30.0) == 1.0
    args.kl_warmup = 0.0
    assert bench.warmup_schedules(args) == {}  # no warm-up: the plain ELBO from the start


def test_the_vae_is_trained_once_when_the_chain_guide_equals_the_diagonal_one(bench):
    args = Namespace(models=["vae", "dlgm"], guides=["diagonal_normal", "chain_normal"])
    assert bench.pair_names(args) == [
        ("vae", "diagonal_normal"), ("dlgm", "diagonal_normal"), ("dlgm", "chain_normal")]
    args.guides = ["chain_normal"]  # alone, it trains the VAE as well
    assert bench.pair_names(args) == [("vae", "chain_normal"), ("dlgm", "chain_normal")]


def test_differences_are_paired_by_seed_and_guide(bench):
    rows = [
        dict(model="vae", guide="diagonal_normal", seed=0, is_log_likelihood=-23.0),
        dict(model="vae", guide="diagonal_normal", seed=1, is_log_likelihood=-22.0),
        dict(model="dlgm", guide="chain_normal", seed=0, is_log_likelihood=-22.5),
        dict(model="dlgm", guide="chain_normal", seed=1, is_log_likelihood=-22.25),
        dict(model="dlgm", guide="householder", seed=0, is_log_likelihood=-21.0),
    ]
    bench.add_differences(rows)
    assert rows[2]["vs_vae"] == pytest.approx(0.5) and rows[2]["peer_guide"] == "diagonal_normal"
    assert rows[3]["vs_vae"] == pytest.approx(-0.25)
    assert "vs_vae" not in rows[4]  # no VAE under householder: no peer, no number
