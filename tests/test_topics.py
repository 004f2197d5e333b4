"""Semi-amortized held-out evaluation of topic models (zoo/topics.py) and its CLI: LDA with the
Dirichlet guide is refined by its E-step and scored by the collapsed bound, the same numbers
``benchmarks/topic_models.py`` reports; other guides by Adam on their own bound."""

import json

import numpy as np
import pyro
import pytest
import torch

from zoo import cli
from zoo import topics as zoo_topics
from zoo.data.dataset import Dataset
from zoo.data.text import SparseCountsSplit
from zoo.models import lda_bounds
from zoo.registry import get_guide, get_model


def planted_corpus(num_docs=60, seed=0):
    """Documents of 80 words from 3 disjoint topics over 12 words; the topics."""
    generator = torch.Generator().manual_seed(seed)
    topics = torch.zeros(3, 12)
    for k in range(3):
        topics[k, 4 * k:4 * k + 4] = 0.25
    theta = torch.distributions.Dirichlet(torch.full((3,), 0.3)).sample((num_docs,))
    probs = theta @ topics
    x = torch.stack([torch.bincount(torch.multinomial(p, 80, True, generator=generator),
                                    minlength=12) for p in probs]).float()
    return x, topics


def text_dataset(x):
    import scipy.sparse as sp

    counts = sp.csr_matrix(x.numpy())
    return Dataset("planted", SparseCountsSplit(counts[:40]), SparseCountsSplit(counts[40:]),
                   kind="text", meta={"vocab": [f"w{i}" for i in range(x.shape[1])]})


def test_lda_dirichlet_refinement_is_the_benchmarks_formula(seed):
    """For LDA + dirichlet, `heldout_bounds(refine_steps=N)` is `lda_heldout_bounds` started at
    the encoder's Dirichlets with N E-steps and N // 2 Adam steps, scoring draws seeded from
    the global stream; and it raises the encoder's bound by many nats per document."""
    x, topics = planted_corpus()
    data = text_dataset(x)
    model = get_model("lda", input_dim=12, num_topics=3)
    guide = get_guide("dirichlet", model)
    assert zoo_topics.has_closed_form_refinement(model, guide)
    amortized, _ = zoo_topics.heldout_bounds(model, guide, data.test, num_particles=64)
    pyro.set_rng_seed(5)
    refined, lengths = zoo_topics.heldout_bounds(model, guide, data.test, num_particles=64,
                                                 refine_steps=10)
    assert guide.training and model.training  # the modes are restored
    pyro.set_rng_seed(5)
    scoring_seed = int(torch.randint(2**31, ()))
    guide.eval()
    with torch.no_grad():
        means = zoo_topics.global_means(model, guide)

    def initial(x):
        return guide.local_concentration(guide.local_parameters(x)["doc_topics"])

    expected, _ = lda_bounds.lda_heldout_bounds(
        data.test, means["topic_words"], model.alpha, initial, model.local_update,
        coordinate_steps=10, gradient_steps=5, num_particles=64, seed=scoring_seed)
    np.testing.assert_allclose(refined, expected, rtol=1e-5)
    assert lengths.sum() == x[40:].sum().item()
    assert refined.mean() > amortized.mean() + 5.0


def test_logistic_normal_guide_is_refined_by_adam_on_its_own_bound(seed):
    x, _ = planted_corpus()
    data = text_dataset(x)
    model = get_model("lda", input_dim=12, num_topics=3)
    guide = get_guide("logistic_normal", model)
    assert not zoo_topics.has_closed_form_refinement(model, guide)
    before, _ = zoo_topics.heldout_bounds(model, guide, data.test, num_particles=256)
    after, _ = zoo_topics.heldout_bounds(model, guide, data.test, num_particles=256,
                                         refine_steps=30, refine_lr=0.1)
    assert after.mean() > before.mean() + 1.0


def test_zoo_train_and_evaluate_report_lda_refined_perplexity(tmp_path):
    """LDA + dirichlet: the run summary carries the refined perplexity by default (the figure
    the topics were trained for), `--refine 0` leaves it out, `--refine N` sets the steps."""
    out = tmp_path / "lda"
    cli.main(["train", "lda", "--data", "reuters", "--model-opt", "num_topics=5", "--epochs",
              "2", "--out", str(out), "--quiet"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refine_steps"] == 100
    assert summary["perplexity_refined"] < summary["perplexity"]
    cli.main(["evaluate", str(out), "--refine", "0"])
    assert "perplexity_refined" not in json.loads((out / "summary.json").read_text())
    cli.main(["evaluate", str(out), "--refine", "20"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["refine_steps"] == 20 and summary["perplexity_refined"] < summary["perplexity"]


def test_negative_refine_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--refine"):
        cli.main(["evaluate", str(tmp_path), "--refine", "-1"])


def test_topics_summary_is_reused_only_while_nothing_changed(seed, monkeypatch):
    """`zoo train` asks for the summary after its last epoch and again for summary.json: the
    second call returns the first result; any change to a parameter, another model or other
    arguments computes afresh."""
    pyro.enable_validation(True)
    x, _ = planted_corpus()
    data = text_dataset(x)
    model = get_model("prodlda", input_dim=12, num_topics=3)
    guide = get_guide("diagonal_normal", model, **model.default_guide_options)
    calls = []
    real = zoo_topics._topics_summary
    monkeypatch.setattr(zoo_topics, "_topics_summary",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    first = zoo_topics.topics_summary(model, guide, data)
    again = zoo_topics.topics_summary(model, guide, data)
    assert len(calls) == 1 and again == first and again is not first
    zoo_topics.topics_summary(model, guide, data, num_words=5)  # other arguments
    assert len(calls) == 2
    with torch.no_grad():  # an optimizer step's in-place update
        next(model.parameters()).add_(1.0)
    changed = zoo_topics.topics_summary(model, guide, data, num_words=5)
    assert len(calls) == 3 and changed["perplexity"] != first["perplexity"]
    other = get_model("prodlda", input_dim=12, num_topics=3)  # another model
    zoo_topics.topics_summary(other, guide, data, num_words=5)
    assert len(calls) == 4


def test_graphbtm_topics_are_scored_against_the_documents_its_graphs_come_from(tmp_path):
    """Biterm graphs keep their documents: a GraphBTM run's coherence is that of the same topics
    against the text dataset itself (the whole corpus), and it reports no per-word perplexity,
    which needs bags of words; `zoo train` writes the topics with its figure."""
    from zoo import metrics
    from zoo.data import load
    from zoo.data.biterms import biterm_dataset

    docs = tmp_path / "docs.txt"
    words = "cat dog mat rug stocks markets bonds rates".split()
    rng = np.random.default_rng(0)
    docs.write_text("\n".join(" ".join(rng.choice(words[4 * (d % 2):4 * (d % 2) + 4], 6))
                              for d in range(40)) + "\n")
    text = load(str(docs), stop_words=None)
    graphs = biterm_dataset(text)
    beta = np.random.default_rng(1).dirichlet(np.ones(text.num_features), 3)
    assert metrics.npmi(beta, zoo_topics.reference_corpus(graphs), top_n=4).mean \
        == pytest.approx(metrics.npmi(beta, text, top_n=4).mean)

    out = tmp_path / "gbtm"
    cli.main(["train", "gbtm", "--data", str(docs), "--data-opt", "stop_words=null",
              "--model-opt", "num_topics=2", "--epochs", "2", "--out", str(out), "--quiet",
              "--seed", "0"])
    summary = json.loads((out / "summary.json").read_text())
    assert -1 <= summary["npmi"] <= 1 and 0 < summary["diversity"] <= 1
    assert len(summary["top_words"]) == 2 and "perplexity" not in summary
    assert (out / "topics.png").exists()
    first_epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert "npmi" in first_epoch and "perplexity" not in first_epoch
