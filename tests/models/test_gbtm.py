"""GraphBTM: biterm extraction on a hand-made document, mini-corpus batches, and recovery of
planted topics from a synthetic short-text corpus (its encoder: tests/guides/test_gcn_normal.py)."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from zoo.data import Dataset, TensorSplit
from zoo.data.biterms import (
    BitermSplit,
    biterm_dataset,
    biterm_matrix,
    endpoint_counts,
    extract_biterms,
)


def test_biterms_of_a_hand_made_document():
    doc = [0, 1, 2, 0]  # positions 0..3
    assert sorted(map(tuple, extract_biterms(doc, window=2))) == [(0, 1), (1, 2), (2, 0)]
    assert sorted(map(tuple, extract_biterms(doc, window=3))) == sorted(
        [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0)])
    a = biterm_matrix(doc, vocab_size=4, window=30).toarray()
    # six biterms: {0,1} x2, {0,2} x2, {1,2}, {0,0}
    expected = np.array([[1, 2, 2, 0], [2, 0, 1, 0], [2, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(a, expected)
    c = endpoint_counts(torch.tensor(a, dtype=torch.float32)[None])
    np.testing.assert_array_equal(c[0].numpy(), [6, 3, 3, 0])  # 2 x 6 endpoints in all
    with pytest.raises(ValueError, match="window must be at least 2"):
        extract_biterms(doc, window=1)
    with pytest.raises(ValueError, match="token ids must lie in 0..2"):
        biterm_matrix([0, 5], vocab_size=3)


def test_mini_corpora_merge_their_documents_and_stay_sparse():
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 20, size=rng.integers(2, 9)) for _ in range(10)]
    split = BitermSplit(docs, vocab_size=20, window=5, docs_per_corpus=3, seed=0)
    assert len(split) == 4 and split.num_features == 20
    assert sorted(np.concatenate(split.groups).tolist()) == list(range(10))
    x = split.batch(torch.arange(4))
    assert x.is_sparse and x.shape == (4, 20, 20)
    dense = x.to_dense()
    for n, group in enumerate(split.groups):
        merged = sum(biterm_matrix(docs[d], 20, window=5).toarray() for d in group)
        np.testing.assert_array_equal(dense[n].numpy(), merged)
    np.testing.assert_allclose(endpoint_counts(x).numpy(), endpoint_counts(dense).numpy())
    # training batches resample groups from the engine's generator, reproducibly
    train = BitermSplit(docs, 20, window=5, docs_per_corpus=3, resample=True)
    a = train.batch(torch.arange(3), torch.Generator().manual_seed(1)).to_dense()
    b = train.batch(torch.arange(3), torch.Generator().manual_seed(1)).to_dense()
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sparse"):
        split.dense()


def test_biterm_dataset_needs_token_order(tmp_path):
    bags = Dataset("bags", TensorSplit(torch.ones(4, 5)), TensorSplit(torch.ones(2, 5)), "text")
    with pytest.raises(ValueError, match="no token sequences"):
        biterm_dataset(bags)
    from zoo.data import load

    path = tmp_path / "short.txt"
    path.write_text("\n".join(["apple banana cherry apple", "banana cherry durian",
                               "cherry durian apple", "durian apple banana"] * 5) + "\n")
    data = biterm_dataset(load(path, test_fraction=0.25, seed=0), window=30, docs_per_corpus=2)
    assert data.kind == "graph" and len(data.train) == 8 and len(data.test) == 3
    assert data.train.batch(torch.arange(2), torch.Generator().manual_seed(0)).shape[1:] == (4, 4)


@pytest.mark.parametrize("likelihood,topic_step", [("endpoints", "gradient"),
                                                   ("biterms", "gradient"), ("biterms", "em")])
def test_recovers_planted_topics_from_short_texts(likelihood, topic_step):
    """Four disjoint 10-word topics, 1,500 single-topic texts of 6-12 words, mini-corpora of 3.
    Topics are ``topic_word_matrix``'s (the product decoder's word distribution at theta = e_k in
    eval mode; the mixture's phi); after Hungarian matching their cosine to the planted topics
    averages >= 0.65 (measured 0.80 for the endpoint likelihood, 0.85 for BTM's; the untrained
    model scores 0.50-0.51) and their top-10 words are >= 70 % right on average (measured 90 % and
    80 %); BTM's likelihood with its topics fitted by online EM, >= 0.95 and 100 % (measured
    0.997)."""
    from zoo.registry import get_guide, get_model
    from zoo.train import fit

    k, v = 4, 40
    rng = np.random.default_rng(0)
    beta = np.full((k, v), 1e-3 / v)
    for t in range(k):
        beta[t, 10 * t: 10 * (t + 1)] += 1.0
    beta /= beta.sum(1, keepdims=True)
    docs = [rng.choice(v, size=rng.integers(6, 13), p=beta[rng.integers(k)]) for _ in range(1500)]
    data = Dataset("planted-short", BitermSplit(docs[:1200], v, resample=True),
                   BitermSplit(docs[1200:], v), "graph")

    def matched(model):
        model.eval()
        with torch.no_grad():
            topics = model.topic_word_matrix().numpy()
        unit = topics / np.linalg.norm(topics, axis=1, keepdims=True)
        cosine = unit @ (beta / np.linalg.norm(beta, axis=1, keepdims=True)).T
        rows, cols = linear_sum_assignment(-cosine)
        top = np.argsort(-topics, axis=1)[rows, :10]
        precision = np.mean([np.mean(top[n] // 10 == cols[n]) for n in range(k)])
        return cosine[rows, cols].mean(), precision

    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=v, num_topics=k, likelihood=likelihood,
                      topic_step=topic_step)
    guide = get_guide("gcn_normal", model, gcn_dim=32, hidden_dims=(32,))
    before, _ = matched(model)
    history = fit(model, guide, data, epochs=15, batch_size=32, lr=0.005, seed=0, progress=False)
    assert history[-1]["heldout_elbo"] > history[0]["heldout_elbo"]
    cosine, precision = matched(model)
    assert before < 0.6
    assert cosine >= 0.65 and precision >= 0.7
    if topic_step == "em":
        assert cosine >= 0.95 and precision == 1


def test_biterm_likelihood_sums_each_pair_once_over_a_mixture_of_topics():
    """BTM's likelihood on a hand-made graph, against the sum written out pair by pair:
    sum_{i <= j} A_ij log sum_k theta_k phi_ki phi_kj, with particle dimensions kept."""
    from zoo.registry import get_model

    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=4, num_topics=3).eval()
    a = torch.tensor(biterm_matrix([0, 1, 2, 0], vocab_size=4).toarray(), dtype=torch.float32)
    graphs = torch.stack([a, a.flip(0).flip(1)])  # [2, 4, 4], as dense and as sparse
    h = torch.randn(5, 2, 3)  # 5 particles of 2 mini-corpora
    theta, phi = torch.softmax(h, -1), model.topic_words().detach()
    expected = torch.zeros(5, 2)
    for b in range(2):
        for i in range(4):
            for j in range(i, 4):
                if graphs[b, i, j] > 0:
                    mixed = (theta[:, b] * phi[:, i] * phi[:, j]).sum(-1)
                    expected[:, b] += graphs[b, i, j] * mixed.log()
    for x in (graphs, graphs.to_sparse()):
        got = model.biterm_log_likelihood(h, x).detach()
        assert got.shape == (5, 2)
        torch.testing.assert_close(got, expected)


def test_biterm_prior_samples_two_words_per_biterm_and_options_are_checked():
    from zoo.registry import get_model

    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=30, num_topics=4).eval()
    assert model.config["dropout"] == 0.25 and model.config["likelihood"] == "biterms"
    counts = model(batch_size=6, num_biterms=7)
    assert counts.shape == (6, 30) and torch.equal(counts.sum(-1), torch.full((6,), 14.0))
    assert get_model("gbtm", likelihood="endpoints").config["dropout"] == 0.6
    with pytest.raises(ValueError, match=r"likelihood must be one of \('endpoints', 'biterms'\)"
                                         r", got 'pairs'"):
        get_model("gbtm", likelihood="pairs")


@pytest.mark.parametrize("topic_step", ["gradient", "em"])
def test_mixture_topics_start_at_mini_corpora_once(topic_step):
    """The first training step seeds the topics from its batch (k-means++), once: the flag is
    a buffer, so a resumed run does not seed again."""
    from pyro import poutine

    from zoo.registry import get_model

    docs = [np.array([0, 1, 0, 1, 2]), np.array([5, 6, 7, 5]), np.array([8, 9, 8])] * 4
    x = BitermSplit(docs, 10, docs_per_corpus=1).batch(torch.arange(12))
    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=10, num_topics=3, topic_step=topic_step).train()
    assert not bool(model.topics_seeded) and "topics_seeded" in model.state_dict()
    poutine.trace(model).get_trace(x)
    assert bool(model.topics_seeded)
    # each topic is one of the three kinds of mini-corpus: its words carry most of the mass (the
    # rest is the seeds' smoothing, 0.5 / V per word)
    groups = [[0, 1, 2], [5, 6, 7], [8, 9]]
    phi = model.topic_words().detach()
    mass = torch.stack([phi[:, g].sum(-1) for g in groups], -1)  # [K, groups]
    assert sorted(mass.argmax(-1).tolist()) == [0, 1, 2] and mass.max(-1).values.min() > 0.7
    before = phi.clone()
    poutine.trace(model).get_trace(x)
    assert torch.equal(model.topic_words().detach(), before)


def test_em_topic_counts_share_each_biterm_among_the_topics():
    """The E-step written out biterm by biterm: r_bk = phi_k,i phi_k,j / sum_k' (...), and each
    of the biterm's two words gets r_bk; every biterm is counted once (the matrix holds a pair
    twice), so the counts total twice the biterms."""
    from zoo.registry import get_model

    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=4, num_topics=3, topic_step="em")
    model.topic_counts.copy_(torch.rand(3, 4) + 0.1)
    a = torch.tensor(biterm_matrix([0, 1, 2, 0], vocab_size=4).toarray(), dtype=torch.float32)
    phi = model.topic_words()
    expected = torch.zeros(3, 4)
    for i in range(4):
        for j in range(i, 4):
            if a[i, j] > 0:
                r = phi[:, i] * phi[:, j] / (phi[:, i] * phi[:, j]).sum()
                expected[:, i] += a[i, j] * r
                expected[:, j] += a[i, j] * r
    for x in (a[None], a[None].to_sparse()):
        got = model.expected_topic_counts(x)
        torch.testing.assert_close(got, expected)
        assert float(got.sum()) == pytest.approx(2 * 6)  # six biterms


def test_em_step_is_taken_on_backward_only_and_is_the_online_em_update():
    """Evaluating the loss leaves the topics alone; one backward pass moves them to
    (1 - rho) lambda + rho (beta + M / B * expected counts), rho = (1 + 1)^(-1/2); the encoder
    gets gradients, and the topics are no parameter of the optimizer's."""
    import pyro
    from pyro.infer import Trace_ELBO

    from zoo.registry import get_guide, get_model

    docs = [np.array([0, 1, 0, 1, 2]), np.array([5, 6, 7, 5]), np.array([8, 9, 8])] * 4
    x = BitermSplit(docs, 10, docs_per_corpus=1).batch(torch.arange(12))
    pyro.clear_param_store()
    torch.manual_seed(0)
    model = get_model("gbtm", input_dim=10, num_topics=3, topic_step="em").train()
    guide = get_guide("gcn_normal", model, gcn_dim=8, hidden_dims=(8,)).train()
    assert not any(name.startswith("topic") for name, _ in model.named_parameters())
    elbo = Trace_ELBO()
    elbo.differentiable_loss(model, guide, x, num_data=120)  # seeds the topics, no step
    seeded = model.topic_counts.clone()
    assert bool(model.topics_seeded) and int(model.topic_em.steps) == 0
    elbo.differentiable_loss(model, guide, x, num_data=120)
    assert torch.equal(model.topic_counts, seeded)
    target = model.em_smoothing + 10 * model.expected_topic_counts(x)
    elbo.differentiable_loss(model, guide, x, num_data=120).backward()
    rho = 2 ** -0.5
    torch.testing.assert_close(model.topic_counts, (1 - rho) * seeded + rho * target)
    assert int(model.topic_em.steps) == 1
    assert all(p.grad is not None for p in guide.parameters() if p.requires_grad)


def test_em_topic_step_options_are_checked():
    from zoo.registry import get_model

    with pytest.raises(ValueError, match=r"topic_step must be one of \('gradient', 'em'\), "
                                         r"got 'newton'"):
        get_model("gbtm", topic_step="newton")
    with pytest.raises(ValueError, match="likelihood='endpoints' has a product decoder"):
        get_model("gbtm", likelihood="endpoints", topic_step="em")
