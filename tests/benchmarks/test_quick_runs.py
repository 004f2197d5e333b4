"""Benchmarks cannot rot: each runs end to end in its ``--quick`` smoke mode (as Pyro's
``test_examples.py`` runs its examples with tiny arguments). The two 20 Newsgroups benchmarks
take minutes even when quick and are left to ``make bench`` / their README commands."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SMOKE = ["train_throughput", "importance", "deep_models", "nested_vi", "topic_throughput",
         "short_texts"]
NOT_SMOKED = {"topic_models", "correlated_topics", "nested_vi_reference"}


def test_every_benchmark_is_smoke_tested_or_listed():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(SMOKE) | NOT_SMOKED, "add a new benchmark to SMOKE or NOT_SMOKED"


@pytest.mark.parametrize("name", SMOKE)
def test_benchmark_runs_quick(name):
    result = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "|" in result.stdout, "a benchmark prints a markdown row"


@pytest.mark.parametrize("flag", ["--model-option", "--train-option"])
def test_a_malformed_benchmark_option_is_refused_by_name(flag):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "short_texts.py"), "--quick", flag,
                             "dropout"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "expected KEY=VALUE, got 'dropout'" in result.stderr
    assert "Traceback" not in result.stderr


def test_short_texts_refuses_empty_mini_corpora():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "short_texts.py"), "--quick",
                             "--docs-per-corpus", "0"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0 and "--docs-per-corpus must be >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr
