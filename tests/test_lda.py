"""LDA (zoo/models/lda.py) and its simplex guides (guides/dirichlet.py, guides/logistic_normal.py):
shapes, scaling under minibatches, exact guide densities, analytic KL, guide fitting."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from guides.logistic_normal import AdditiveLogisticTransform, logistic_normal
from zoo import evaluation
from zoo import topics as zoo_topics
from zoo.registry import get_guide, get_model, list_guides

GUIDES = ["dirichlet", "logistic_normal"]


def small_lda(**config):
    return get_model("lda", input_dim=12, num_topics=3, **config)


def test_registry_and_guide_fit():
    model = small_lda()
    assert set(GUIDES) <= set(list_guides(model))
    assert "diagonal_normal" not in list_guides(model)
    with pytest.raises(ValueError, match="dirichlet"):  # the error names the guides that fit
        get_guide("diagonal_normal", model)
    for name in GUIDES:  # and the simplex guides refuse real-valued latents
        with pytest.raises(ValueError, match="simplex"):
            get_guide(name, get_model("prodlda", input_dim=12, num_topics=3))


def test_prior_samples_and_site_shapes(seed):
    model = small_lda()
    x = model(None, batch_size=5, doc_length=30)  # [5, V] counts drawn from the prior
    assert x.shape == (5, 12) and torch.all(x.sum(-1) == 30)
    trace = poutine.trace(model).get_trace(x, num_data=50)
    assert trace.nodes["topic_words"]["value"].shape == (3, 12)
    assert trace.nodes["doc_topics"]["value"].shape == (5, 3)
    # the topics are global: not scaled; documents are scaled by num_data / batch
    assert trace.nodes["topic_words"]["scale"] == 1.0
    assert trace.nodes["doc_topics"]["scale"] == pytest.approx(10.0)
    assert trace.nodes["x"]["scale"] == pytest.approx(10.0)
    sites = {s.name: s for s in model.latent_sites()}
    assert not sites["topic_words"].local and sites["doc_topics"].local


@pytest.mark.parametrize("guide_name", GUIDES)
def test_guide_matches_model(guide_name, seed):
    model = small_lda()
    guide = get_guide(guide_name, model)
    x = model(None, batch_size=4, doc_length=20)
    g = poutine.trace(guide).get_trace(x, num_data=40)
    m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, num_data=40)
    for s in model.latent_sites():
        assert g.nodes[s.name]["value"].shape == m.nodes[s.name]["value"].shape
        assert torch.allclose(g.nodes[s.name]["value"].sum(-1), torch.tensor(1.0), atol=1e-5)
    assert g.nodes["topic_words"]["scale"] == 1.0
    assert g.nodes["doc_topics"]["scale"] == pytest.approx(10.0)
    assert guide.posterior_mean("topic_words").shape == (3, 12)


@pytest.mark.parametrize("guide_name", GUIDES)
def test_minibatch_elbo_is_unbiased(guide_name, seed):
    """The mean of minibatch ELBO estimates equals the full-batch ELBO within Monte Carlo error;
    scaling the global topics by num_data / batch too (a bare batch plate) would move the mean
    by (num_data / batch - 1) * E[log p(beta) - log q(beta)], tens of nats here."""
    model = small_lda(doc_concentration=0.5, topic_concentration=0.5)
    guide = get_guide(guide_name, model)
    data = model(None, batch_size=24, doc_length=20)  # [24, 12]
    elbo = Trace_ELBO(num_particles=200, vectorize_particles=True, max_plate_nesting=1)
    full = torch.tensor([-elbo.loss(model, guide, data) for _ in range(4)])
    mini = torch.tensor([
        -elbo.loss(model, guide, data[torch.randperm(24)[:6]], num_data=24) for _ in range(40)
    ])
    error = (full.var() / len(full) + mini.var() / len(mini)).sqrt()
    assert (full.mean() - mini.mean()).abs() < 4 * error + 1e-3, (full.mean(), mini.mean(), error)
    # the check has power: the global site's log p - log q is far from 0 at this init
    with torch.no_grad():
        g = poutine.trace(guide).get_trace(data)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(data)
        gap = (m.nodes["topic_words"]["fn"].log_prob(g.nodes["topic_words"]["value"]).sum()
               - g.nodes["topic_words"]["fn"].log_prob(g.nodes["topic_words"]["value"]).sum())
    assert 3 * gap.abs() > 10 * error


def test_meanfield_uses_the_analytic_dirichlet_kl(seed):
    model = small_lda(doc_concentration=0.5, topic_concentration=0.5)
    guide = get_guide("dirichlet", model)
    data = model(None, batch_size=8, doc_length=20)
    q, p = guide.global_dist("topic_words"), dist.Dirichlet(model.eta)
    with torch.no_grad():
        kl = torch.distributions.kl_divergence(q, p).sum()  # registered: no NotImplementedError
        samples = q.sample((20000,))
        mc = (q.log_prob(samples) - p.log_prob(samples)).mean(0).sum()
    assert kl.item() == pytest.approx(mc.item(), rel=0.05)
    trace = [-Trace_ELBO(max_plate_nesting=1).loss(model, guide, data) for _ in range(300)]
    meanfield = [-TraceMeanField_ELBO(max_plate_nesting=1).loss(model, guide, data)
                 for _ in range(300)]
    trace, meanfield = torch.tensor(trace), torch.tensor(meanfield)
    error = (trace.var() / 300 + meanfield.var() / 300).sqrt()
    assert (trace.mean() - meanfield.mean()).abs() < 4 * error  # same ELBO ...
    assert meanfield.var() < trace.var()  # ... with less variance


def test_additive_logistic_density_is_exact(seed):
    loc, scale = torch.randn(4), torch.rand(4) + 0.3
    d = logistic_normal(loc, scale)
    y = d.rsample()
    assert y.shape == (5,) and y.sum() == pytest.approx(1.0, abs=1e-6)
    t = AdditiveLogisticTransform(cache_size=0)
    u = t.inv(y)
    assert torch.allclose(t(u), y, atol=1e-6)

    def first(v):  # the K - 1 free coordinates of the map
        return t(v)[:-1]

    log_det = torch.linalg.slogdet(torch.autograd.functional.jacobian(first, u))[1]
    expected = dist.Normal(loc, scale).log_prob(u).sum() - log_det
    assert d.log_prob(y) == pytest.approx(expected.item(), abs=1e-4)
    assert t.log_abs_det_jacobian(u, y) == pytest.approx(log_det.item(), abs=1e-4)


def test_logistic_normal_topics_stay_on_the_simplex_for_a_large_vocabulary(seed):
    """Stick-breaking over 2,000 words misses torch's 1e-6 simplex check; softmax does not."""
    model = get_model("lda", input_dim=2000, num_topics=50)
    guide = get_guide("logistic_normal", model)
    x = model(None, batch_size=3, doc_length=40)
    loss = Trace_ELBO(max_plate_nesting=1).loss(model, guide, x)  # validation is on
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.parametrize("guide_name", GUIDES)
def test_local_parameter_override(guide_name, seed):
    model = small_lda()
    guide = get_guide(guide_name, model)
    x = model(None, batch_size=4, doc_length=20)
    raw = {k: torch.zeros_like(v) for k, v in guide.local_parameters(x).items()}
    with guide.using_local_parameters(raw):
        q = poutine.trace(guide).get_trace(x).nodes["doc_topics"]["fn"]
    assert q.batch_shape == (4,)
    if guide_name == "dirichlet":  # exp(0) * softmax(0) + floor, the same for every document
        assert torch.allclose(q.concentration, torch.tensor(1 / 3 + 0.05), atol=1e-5)
    assert guide._override is None


def synthetic_corpus(num_docs=40, seed=0):
    """A small LDA corpus with sparse proportions: ``(model, topics [3, 12], counts [D, 12])``."""
    pyro.set_rng_seed(seed)
    model = small_lda(doc_concentration=0.3, topic_concentration=0.3)
    with torch.no_grad():
        trace = poutine.trace(model).get_trace(None, batch_size=num_docs, doc_length=60)
    return model, trace.nodes["topic_words"]["value"], trace.nodes["x"]["value"]


def test_local_update_is_the_variational_e_step(seed):
    """Coordinate ascent from flat proportions raises the documents' (collapsed) bounds and
    reaches a fixed point of the classical update."""
    model, topics, x = synthetic_corpus()
    flat = torch.ones(x.shape[0], 3)
    log_topics = {"topic_words": topics.log()}
    gamma = model.local_update(x, flat, log_topics, steps=100)
    assert torch.allclose(gamma.sum(-1), x.sum(-1) + model.alpha.sum(), rtol=1e-4)  # alpha + N
    assert torch.allclose(model.local_update(x, gamma, log_topics, steps=1), gamma, rtol=1e-3)
    with torch.no_grad():
        before = evaluation.dirichlet_document_bounds(x, topics, model.alpha, flat, 256)
        after = evaluation.dirichlet_document_bounds(x, topics, model.alpha, gamma, 256)
    assert after.mean() > before.mean() + 1.0


def test_refinement_never_lowers_the_bound_on_average(seed):
    """Adam steps on the collapsed bound, after coordinate ascent or from flat proportions,
    raise it on average; scored with a shared seed, so the comparison is paired."""
    model, topics, x = synthetic_corpus()
    kw = dict(alpha=model.alpha, local_update=model.local_update, num_particles=256)
    flat, _ = evaluation.lda_heldout_bounds(x, topics, **kw)
    adam, _ = evaluation.lda_heldout_bounds(x, topics, gradient_steps=40, **kw)
    cavi, _ = evaluation.lda_heldout_bounds(x, topics, coordinate_steps=50, **kw)
    both, lengths = evaluation.lda_heldout_bounds(x, topics, coordinate_steps=50,
                                                  gradient_steps=40, **kw)
    assert adam.mean() > flat.mean() + 1.0
    assert cavi.mean() > flat.mean() + 1.0
    assert both.mean() >= cavi.mean() - 0.05  # within Monte Carlo error of the paired draws
    assert np.all(both < 0) and lengths.sum() == x.sum().item()


def test_collapsed_bound_matches_the_guide_bound(seed):
    """zoo.evaluation's analytic-KL bound estimates the same b_d as zoo.topics' Monte Carlo
    one, for the Dirichlet guide's own concentrations."""
    model, _, x = synthetic_corpus(num_docs=6)
    guide = get_guide("dirichlet", model).eval()
    topics_mean = guide.posterior_mean("topic_words")
    with torch.no_grad():
        gamma = guide.local_concentration(guide.local_parameters(x)["doc_topics"])
        ours = evaluation.dirichlet_document_bounds(x, topics_mean, model.alpha, gamma, 20000)
        theirs = zoo_topics.document_bounds(model, guide, x, num_particles=20000)
    assert torch.allclose(ours, theirs, atol=0.5), (ours, theirs)


def test_local_steps_train_on_coordinate_ascent_and_evaluate_the_encoder(seed):
    model, _, x = synthetic_corpus(num_docs=8)
    guide = get_guide("dirichlet", model, local_steps=20)
    with torch.no_grad():
        expected_logs = {"topic_words": guide.expected_log("topic_words")}
        target = model.local_update(x, torch.ones(8, 3), expected_logs, 20)
    trace = poutine.trace(guide).get_trace(x)  # with gradients: the encoder's factor is there
    used = trace.nodes["doc_topics"]["fn"].concentration.detach()
    assert torch.allclose(used, target.clamp_min(guide.min_concentration), rtol=1e-4)
    assert trace.nodes["doc_topics_amortization"]["infer"]["is_auxiliary"]
    # the encoder learns from a zero-valued factor: the loss is the ELBO, the gradient exists
    loss = Trace_ELBO(max_plate_nesting=1)(model, guide)(x)
    loss.backward()
    assert guide.heads["doc_topics"].weight.grad.abs().sum() > 0
    guide.eval()  # held-out figures measure the encoder alone
    with torch.no_grad():
        q = poutine.trace(guide).get_trace(x).nodes["doc_topics"]["fn"]
        encoder = guide.local_concentration(guide.encoder_parameters(x)["doc_topics"])
    assert torch.allclose(q.concentration, encoder)
    broken = small_lda()
    broken.local_update = None
    with pytest.raises(ValueError, match="local_steps"):
        get_guide("dirichlet", broken, local_steps=3)


def numpy_vb_step(x, lam, alpha, eta, steps, scale=1.0):
    """Reference, written apart from the model: ``steps`` E-step updates of every document's
    gamma from flat at topics Dir(lam), then the M-step eta + scale * sum_d x_dv phi_dvk."""
    from scipy.special import digamma

    x, lam = x.double().numpy(), lam.double().numpy()
    exp_elog_beta = np.exp(digamma(lam) - digamma(lam.sum(1, keepdims=True)))  # [K, V]
    gamma = np.ones((x.shape[0], lam.shape[0]))
    for _ in range(steps + 1):  # the last pass only computes phi at the final gamma
        exp_elog_theta = np.exp(digamma(gamma) - digamma(gamma.sum(1, keepdims=True)))
        phi = exp_elog_theta[:, :, None] * exp_elog_beta[None]  # [D, K, V]
        phi /= phi.sum(1, keepdims=True)
        new_gamma = alpha + (x[:, None, :] * phi).sum(-1)  # [D, K]
        if _ < steps:
            gamma = new_gamma
    return eta + scale * (x[:, None, :] * phi).sum(0)  # [K, V]


def natural_guide(model, **options):
    """A Dirichlet guide with natural topic steps, one per batch unless ``natural_batch``."""
    options = {"global_step": "natural", "local_steps": 20, "natural_batch": 1, **options}
    return get_guide("dirichlet", model, **options)


def test_natural_step_on_the_whole_corpus_is_the_batch_vb_m_step(seed):
    """With one batch equal to the corpus and rho_1 = (1 + tau)^-kappa = 1, one training step
    sets the topics to the M-step of batch variational Bayes; a minibatch of B = D / 4 then
    moves them by rho_2 (B / D: smaller than the largest batch seen) towards
    eta + (D / B) * its expected counts."""
    model, _, x = synthetic_corpus(num_docs=40)
    guide = natural_guide(model, natural_offset=0.0, natural_decay=0.7)
    loss_fn = Trace_ELBO(max_plate_nesting=1)(model, guide)
    before = guide.global_concentration("topic_words").clone()
    expected = numpy_vb_step(x, before, 0.3, 0.3, steps=20)
    loss_fn(x).backward()
    after = guide.global_concentration("topic_words").clone()
    assert np.allclose(after.double().numpy(), expected, rtol=1e-4)
    assert int(guide.natural.steps) == 1 and guide.posterior_mean("topic_words").shape == (3, 12)

    batch = x[:10]
    target = numpy_vb_step(batch, after, 0.3, 0.3, steps=20, scale=4.0)
    rho = 2.0 ** -0.7 * 10 / 40
    loss_fn(batch, num_data=40).backward()
    assert np.allclose(guide.global_concentration("topic_words").double().numpy(),
                       (1 - rho) * after.double().numpy() + rho * target, rtol=1e-4)


def test_natural_steps_happen_once_per_backward_pass(seed):
    """Evaluating the loss never moves the topics; n particles, vectorized or not, take one
    step per backward pass; the optimizer never sees the topics; a partial batch takes a
    step scaled by its size over the largest batch's."""
    model, _, x = synthetic_corpus(num_docs=40)
    guide = natural_guide(model, natural_offset=1.0, natural_decay=0.7)
    assert "natural.topic_words" in guide.state_dict()
    assert all("topic_words" not in name for name, _ in guide.named_parameters())
    start = guide.global_concentration("topic_words").clone()
    Trace_ELBO(max_plate_nesting=1).loss(model, guide, x[:8], num_data=40)
    Trace_ELBO(max_plate_nesting=1)(model, guide)(x[:8], num_data=40)  # no backward
    guide.eval()
    Trace_ELBO(max_plate_nesting=1)(model, guide)(x[:8], num_data=40).backward()
    guide.train()
    assert torch.equal(guide.global_concentration("topic_words"), start)
    for vectorize in (False, True):
        steps = int(guide.natural.steps)
        loss = Trace_ELBO(num_particles=3, vectorize_particles=vectorize,
                          max_plate_nesting=1)(model, guide)(x[:8], num_data=40)
        loss.backward()
        assert int(guide.natural.steps) == steps + 1
    # a remainder batch of 2 after batches of 8: a quarter of the step
    current = guide.global_concentration("topic_words").clone()
    with torch.no_grad():
        raw = guide.refined_local_parameters(x[8:10], guide.encoder_parameters(x[8:10]))
        gamma = guide.local_concentration(raw["doc_topics"])
        target = model.global_update(x[8:10], gamma, {"topic_words": guide.expected_log(
            "topic_words")}, 20.0)["topic_words"]
    rho = (int(guide.natural.steps) + 1 + 1.0) ** -0.7 * 2 / 8
    Trace_ELBO(max_plate_nesting=1)(model, guide)(x[8:10], num_data=40).backward()
    assert torch.allclose(guide.global_concentration("topic_words"),
                          (1 - rho) * current + rho * target, rtol=1e-5)


def test_natural_steps_pool_batches(seed):
    """With natural_batch = 16 and batches of 8, the topics stay put after one batch and then
    step towards the pooled estimate: the documents-weighted mean of the two batches'."""
    model, _, x = synthetic_corpus(num_docs=40)
    guide = natural_guide(model, natural_offset=0.0, natural_decay=0.0, natural_batch=16)
    loss_fn = Trace_ELBO(max_plate_nesting=1)(model, guide)
    start = guide.global_concentration("topic_words").clone()
    targets = []
    for batch in (x[:8], x[8:16]):
        with torch.no_grad():
            raw = guide.refined_local_parameters(batch, guide.encoder_parameters(batch))
            gamma = guide.local_concentration(raw["doc_topics"])
            targets.append(model.global_update(batch, gamma, {"topic_words": guide.expected_log(
                "topic_words")}, 5.0)["topic_words"])
        loss_fn(batch, num_data=40).backward()
        if len(targets) == 1:
            assert torch.equal(guide.global_concentration("topic_words"), start)
    # rho = 1 (tau = kappa = 0): the pooled estimate, eta + (40 / 16) * both batches' counts
    assert torch.allclose(guide.global_concentration("topic_words"),
                          (targets[0] + targets[1]) / 2, rtol=1e-5)
    assert int(guide.natural.steps) == 1


def test_natural_steps_resume_exactly(tmp_path):
    """The topics and the step count are guide state: a run resumed from its checkpoint ends
    where an uninterrupted run does."""
    from zoo.data import Dataset, TensorSplit
    from zoo.train import fit

    _, _, x = synthetic_corpus(num_docs=60)
    data = Dataset("synthetic", TensorSplit(x[:50]), TensorSplit(x[50:]), "text")

    def run(out_dir, epochs, resume=False):
        pyro.set_rng_seed(0)
        model = small_lda(doc_concentration=0.3, topic_concentration=0.3)
        guide = natural_guide(model)
        fit(model, guide, data, epochs=epochs, batch_size=16, lr=0.01, seed=0,
            out_dir=out_dir, resume=resume, progress=False)
        return guide

    whole = run(tmp_path / "whole", 2)
    run(tmp_path / "split", 1)
    resumed = run(tmp_path / "split", 2, resume=True)
    assert int(resumed.natural.steps) == int(whole.natural.steps) == 8
    assert torch.equal(resumed.global_concentration("topic_words"),
                       whole.global_concentration("topic_words"))


def test_natural_step_needs_a_global_update():
    broken = small_lda()
    broken.global_update = None
    with pytest.raises(ValueError, match="global_update"):
        get_guide("dirichlet", broken, global_step="natural")
    with pytest.raises(ValueError, match="global_step"):
        get_guide("dirichlet", small_lda(), global_step="newton")


def test_lda_natural_steps_take_the_models_schedule():
    """LDA's Dirichlet guide learns its topics by gradient steps unless asked (natural steps
    merge the bars of small corpora, see LDA.default_global_step); asked, they follow the
    model's schedule, recorded in the guide's options, which run folders save."""
    from zoo.models.lda import LDA

    assert get_guide("dirichlet", small_lda()).global_step == "gradient"
    guide = get_guide("dirichlet", small_lda(), global_step="natural")
    assert guide.global_step == "natural" and guide.options["global_step"] == "natural"
    assert {k: guide.options[k] for k in LDA.default_natural_options} == \
        LDA.default_natural_options
    assert guide.natural.batch_documents == LDA.default_natural_options["natural_batch"]
