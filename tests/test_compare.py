"""The statistics and the report of ``zoo compare`` on constructed cells whose answers are known
by hand (no training here; the command itself is tested in tests/cli/test_compare.py)."""

import math

import matplotlib.figure
import pytest

from zoo import compare_plots, compare_report, compare_stats
from zoo.compare_stats import (
    align_topics,
    configuration_rows,
    mean_sd,
    paired_difference,
    paired_points,
)
from zoo.compare_train import ObjectiveSpec


def test_paired_difference_by_seed_has_the_known_mean_se_and_agreement():
    reference = {0: -23.0, 1: -22.0, 2: -22.5}
    # d = (1, 2, 3): mean 2, sd 1, se 1/sqrt(3), all three agree in sign
    better = paired_difference({0: -22.0, 1: -20.0, 2: -19.5}, reference)
    assert better["n"] == 3 and better["seeds"] == [0, 1, 2]
    assert better["differences"] == pytest.approx([1.0, 2.0, 3.0])
    assert better["mean"] == pytest.approx(2.0)
    assert better["sd"] == pytest.approx(1.0)
    assert better["se"] == pytest.approx(1 / math.sqrt(3))
    assert better["agree"] == 3
    # d = (1, -1, 3): mean 1, sd 2, se 2/sqrt(3); two of three have the mean's sign
    mixed = paired_difference({0: -22.0, 1: -23.0, 2: -19.5}, reference)
    assert mixed["mean"] == pytest.approx(1.0) and mixed["sd"] == pytest.approx(2.0)
    assert mixed["se"] == pytest.approx(2 / math.sqrt(3)) and mixed["agree"] == 2
    # d = (-1, -2): worse on both seeds, agree 2 (with the negative mean)
    worse = paired_difference({0: -24.0, 1: -24.0}, reference)
    assert worse["mean"] == pytest.approx(-1.5) and worse["agree"] == 2


def test_pairing_uses_the_seeds_both_have_and_one_seed_has_no_standard_error():
    paired = paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert paired["seeds"] == [0, 1] and paired["mean"] == pytest.approx(1.5)
    alone = paired_difference({0: 1.0}, {0: 0.5})
    assert alone["n"] == 1 and alone["mean"] == pytest.approx(0.5)
    assert math.isnan(alone["se"]) and alone["agree"] == 1
    assert math.isnan(mean_sd([3.0])["sd"]) and mean_sd([1.0, 3.0])["sd"] == pytest.approx(
        math.sqrt(2))


def test_paired_points_has_the_known_test_set_standard_error():
    # seed 0: delta = (0, 2): mean 1, sd sqrt(2), se sqrt(2)/sqrt(2) = 1
    # seed 1: delta = (1, 3, 1, 3): mean 2, sd sqrt(4/3), se sqrt(4/3)/2
    reference = {0: [0.0, 0.0], 1: [0.0, 0.0, 0.0, 0.0]}
    values = {0: [0.0, 2.0], 1: [1.0, 3.0, 1.0, 3.0]}
    points = paired_points(values, reference)
    assert points["means"] == pytest.approx([1.0, 2.0])
    assert points["ses"] == pytest.approx([1.0, math.sqrt(4 / 3) / 2])
    assert points["mean"] == pytest.approx(1.5)
    assert points["se"] == pytest.approx(math.sqrt(1.0 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="same test set"):
        paired_points({0: [1.0, 2.0, 3.0]}, {0: [1.0, 2.0]})


def cell(label, guide, seed, logp, elbo, **extra):
    return {"id": f"{guide}.{seed}", "configuration": label, "model": "vae", "guide": guide,
            "objective": "trace", "objective_particles": 1, "seed": seed, "run": f"{guide}/{seed}",
            "status": "finished", "epochs": 10, "train_seconds": 1.0, "cpu_seconds": 0.8,
            "seconds_per_epoch": 0.1, "cpu_seconds_per_epoch": 0.08,
            "is_log_likelihood": logp, "is_log_likelihood_stderr": 0.01, "heldout_elbo": elbo,
            "active_units": {"z": 4 + seed}, **extra}


@pytest.fixture
def cells():
    a, b = "vae · diagonal_normal · trace", "vae · householder · trace"
    return [
        cell(a, "diagonal_normal", 0, -23.0, -24.0, pointwise_log_likelihood=[-23.0, -23.0]),
        cell(a, "diagonal_normal", 1, -22.0, -23.0, pointwise_log_likelihood=[-22.0, -22.0]),
        cell(a, "diagonal_normal", 2, -22.5, -23.5, pointwise_log_likelihood=[-22.5, -22.5]),
        cell(b, "householder", 0, -22.0, -24.5, pointwise_log_likelihood=[-23.0, -21.0]),
        cell(b, "householder", 1, -20.0, -23.0, pointwise_log_likelihood=[-20.0, -20.0]),
        cell(b, "householder", 2, -19.5, -23.5, pointwise_log_likelihood=[-19.5, -19.5]),
        {**cell(b, "householder", 3, 0.0, 0.0), "status": "diverged: loss became nan"},
    ]


def test_configuration_rows_give_mean_sd_and_the_paired_difference_from_the_first(cells):
    rows = configuration_rows(cells)
    assert [r["configuration"] for r in rows] == ["vae · diagonal_normal · trace",
                                                  "vae · householder · trace"]
    ref, flow = rows
    assert ref["seeds"] == [0, 1, 2] and flow["seeds"] == [0, 1, 2]  # diverged seed 3 left out
    assert ref["metrics"]["is_log_likelihood"]["mean"] == pytest.approx(-22.5)
    assert ref["metrics"]["is_log_likelihood"]["sd"] == pytest.approx(0.5)
    assert ref["active_units"] == {"z": pytest.approx(5.0)}
    logp = flow["vs_reference"]["is_log_likelihood"]
    assert logp["mean"] == pytest.approx(2.0) and logp["se"] == pytest.approx(1 / math.sqrt(3))
    assert logp["agree"] == 3
    # per point: seed 0 delta (0, 2); seeds 1, 2 delta (2, 2) and (3, 3) (sd 0)
    assert logp["points"]["mean"] == pytest.approx((1 + 2 + 3) / 3)
    assert logp["points"]["se"] == pytest.approx(1.0 / 3)
    elbo = flow["vs_reference"]["heldout_elbo"]
    assert elbo["differences"] == pytest.approx([-0.5, 0.0, 0.0]) and elbo["agree"] == 1
    assert compare_stats.primary_metric(rows) == "is_log_likelihood"


def test_the_markdown_report_shows_those_numbers(cells):
    rows = configuration_rows(cells)
    report = {"title": "t", "setup": ["s"], "primary_metric": "is_log_likelihood",
              "configurations": rows, "cells": cells, "notes": ["n"], "figures": ["a.png"]}
    text = compare_report.markdown(report)
    assert "| vae | householder | trace | 3 |" in text
    assert "-22.500 ± 0.500" in text  # the reference's log p(x) over seeds
    assert "+2.000 ± 0.577 | 3/3" in text  # the paired difference and the agreement
    assert "+2.000 ± 0.333" in text  # the same difference, s.e. over test points
    assert "diverged: loss became nan" in text and "![a.png](a.png)" in text


def test_topics_are_matched_by_their_top_words():
    reference = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    other = [["g", "h", "x"], ["a", "b", "c"], ["d", "y", "z"]]
    assert align_topics(reference, other) == [(1, 3), (2, 1), (0, 2)]
    cells = [{"configuration": "A", "seed": 0, "top_words": reference},
             {"configuration": "B", "seed": 0, "top_words": other}]
    side = compare_stats.topics_side_by_side(cells, num_topics=2, num_words=2)
    assert side["configurations"] == ["A", "B"]
    assert side["rows"][0][1] == {"topic": 1, "words": ["a", "b"], "shared": 3}
    assert isinstance(compare_plots.plot_topics_side_by_side(side), matplotlib.figure.Figure)


def test_the_dot_plot_and_the_curves_are_figures(cells):
    rows = configuration_rows(cells)
    fig = compare_plots.plot_metric_dots(rows, cells, "is_log_likelihood", "IS log p(x)")
    assert isinstance(fig, matplotlib.figure.Figure)
    history = [{"epoch": 1, "seconds": 0.1, "train_loss": 30.0, "heldout_elbo": -30.0},
               {"epoch": 2, "seconds": 0.1, "train_loss": 25.0, "heldout_elbo": -26.0}]
    fig = compare_plots.plot_training_curves([("A", 0, history), ("B", 0, history)],
                                             x="seconds")
    assert [ax.get_title() for ax in fig.axes] == ["training loss (each objective's)",
                                                   "held-out ELBO"]


@pytest.mark.parametrize("spec,expected", [
    ("trace", ObjectiveSpec("trace", 1)), ("iwae:5", ObjectiveSpec("iwae", 5)),
    (("iwae-dreg", 5), ObjectiveSpec("iwae-dreg", 5)),
])
def test_objectives_are_written_name_colon_particles(spec, expected):
    assert ObjectiveSpec.parse(spec) == expected
    assert expected.folder == ("trace" if expected.num_particles == 1 else
                               f"{expected.name}_K{expected.num_particles}")


def test_a_bad_particle_count_is_refused():
    with pytest.raises(ValueError, match="NAME:K"):
        ObjectiveSpec.parse("iwae:zero")
