"""Planted-topic recovery across training seeds: ProdLDA, LDA with both guides and CTM each find
every group of a corpus whose topics are disjoint word groups, on at least 9 of 10 seeds.

The corpus: 5 groups of 8 words (V = 40), each group a topic uniform over its words;
documents of 40 words with proportions ~ Dir(0.3) (most documents use one or two groups),
350 for training and 50 held out. A group counts as recovered when its Hungarian-matched
learned topic has cosine similarity >= 0.9 with it (a topic that mixes two groups scores about
0.7; a dead or spread topic less).

Settings for a corpus this small, as the README's "Topic models" section documents them:
batches of 50 documents (7 steps an epoch; at the registry's 200 or more an epoch would be a
single step), 30 epochs, Adam at lr 0.02 with beta1 = 0.9 (AVITM's beta1 = 0.99 averages ~100
steps, most of this run). ProdLDA and CTM take a prior that matches the corpus' sparsity
(Laplace approximation of Dir(0.3), not of Dir(1)) and dropout 0.2 on the proportions (the
20 Newsgroups default 0.6 blurs 5-topic documents); CTM learns its prior after 10 epochs, not
50. Measured before these settings, ProdLDA recovered every group on 8 of 10 seeds (alpha 1),
CTM on 0 of 10 (dropout 0.6; with ``decoder="mixture"``: 2 of 10).
"""

import pyro
import pytest
import torch

from tests.models.planted import lda_counts, matched_cosines
from zoo import topics
from zoo.data import Dataset, TensorSplit
from zoo.registry import get_guide, get_model
from zoo.train import fit

GROUPS, WORDS = 5, 8
SEEDS = list(range(10))
#: training seeds each method may miss (the issue's bar: every group on >= 9 of 10 seeds)
ALLOWED_MISSES = 1
SMALL_CORPUS = dict(epochs=30, lr=0.02, betas=(0.9, 0.999), batch_size=50)

#: method: (model, guide, model options, training options beyond SMALL_CORPUS)
METHODS = {
    "prodlda": ("prodlda", "diagonal_normal", {"alpha": 0.3, "dropout": 0.2}, {}),
    "lda-dirichlet": ("lda", "dirichlet", {}, {}),
    "lda-logistic_normal": ("lda", "logistic_normal", {}, {}),
    "ctm": ("ctm", "ctf", {"alpha": 0.3, "theta_dropout": 0.2, "prior_warmup": 10}, {}),
}


def planted_corpus(num_docs=400, length=40, alpha=0.3, seed=0):
    """``(groups [G, G*W], counts [D, G*W])``: disjoint groups, documents mixing them."""
    groups = torch.eye(GROUPS).repeat_interleave(WORDS, 1) / WORDS  # group g: words gW..gW+W-1
    return groups, lda_counts(groups, num_docs, length, alpha, seed)


@pytest.fixture(scope="module")
def planted():
    groups, counts = planted_corpus()
    return groups, Dataset("planted", TensorSplit(counts[:350]), TensorSplit(counts[350:]),
                           "text")


def train(data, model_name, guide_name, model_options, train_options, seed):
    pyro.set_rng_seed(seed)
    model = get_model(model_name, input_dim=GROUPS * WORDS, num_topics=GROUPS, **model_options)
    guide = get_guide(guide_name, model, **model.default_guide_options)
    config = {**model.default_train_config, **SMALL_CORPUS, **train_options}
    config["eval_every"] = config["epochs"]  # held-out metrics once, after the last epoch
    fit(model, guide, data, progress=False, seed=seed, **config)
    model.eval()
    guide.eval()
    return model, guide


@pytest.mark.parametrize("method", list(METHODS))
def test_every_planted_group_is_recovered(planted, method):
    pyro.enable_validation(True)
    groups, data = planted
    model_name, guide_name, model_options, train_options = METHODS[method]
    worst = {}
    with pyro.settings.context(module_local_params=True):
        for seed in SEEDS:
            model, guide = train(data, model_name, guide_name, model_options, train_options,
                                 seed)
            worst[seed] = round(float(matched_cosines(groups, topics.topic_word(
                model, guide)).min()), 3)
    missed = [seed for seed, cos in worst.items() if cos < 0.9]
    assert len(missed) <= ALLOWED_MISSES, f"seeds {missed} merged or lost a group: {worst}"


def test_corpus_groups_are_disjoint_and_used(planted):
    groups, data = planted
    assert torch.all((groups > 0).sum(0) == 1)  # every word in exactly one group
    per_group = data.train.values.reshape(len(data.train.values), GROUPS, WORDS).sum((0, 2))
    assert torch.all(per_group > 0.1 * per_group.sum() / GROUPS)  # no group nearly absent
