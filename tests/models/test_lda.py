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
from zoo import topics as zoo_topics
from zoo.models import lda_bounds
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
        before = lda_bounds.dirichlet_document_bounds(x, topics, model.alpha, flat, 256)
        after = lda_bounds.dirichlet_document_bounds(x, topics, model.alpha, gamma, 256)
    assert after.mean() > before.mean() + 1.0


def test_refinement_never_lowers_the_bound_on_average(seed):
    """Adam steps on the collapsed bound, after coordinate ascent or from flat proportions,
    raise it on average; scored with a shared seed, so the comparison is paired."""
    model, topics, x = synthetic_corpus()
    kw = dict(alpha=model.alpha, local_update=model.local_update, num_particles=256)
    flat, _ = lda_bounds.lda_heldout_bounds(x, topics, **kw)
    adam, _ = lda_bounds.lda_heldout_bounds(x, topics, gradient_steps=40, **kw)
    cavi, _ = lda_bounds.lda_heldout_bounds(x, topics, coordinate_steps=50, **kw)
    both, lengths = lda_bounds.lda_heldout_bounds(x, topics, coordinate_steps=50,
                                                  gradient_steps=40, **kw)
    assert adam.mean() > flat.mean() + 1.0
    assert cavi.mean() > flat.mean() + 1.0
    assert both.mean() >= cavi.mean() - 0.05  # within Monte Carlo error of the paired draws
    assert np.all(both < 0) and lengths.sum() == x.sum().item()


def test_collapsed_bound_matches_the_guide_bound(seed):
    """zoo.models.lda_bounds' analytic-KL bound estimates the same b_d as zoo.topics' Monte Carlo
    one, for the Dirichlet guide's own concentrations."""
    model, _, x = synthetic_corpus(num_docs=6)
    model.eval()  # held-out figures are computed in eval mode: the full multinomial density
    guide = get_guide("dirichlet", model).eval()
    topics_mean = guide.posterior_mean("topic_words")
    with torch.no_grad():
        gamma = guide.local_concentration(guide.local_parameters(x)["doc_topics"])
        ours = lda_bounds.dirichlet_document_bounds(x, topics_mean, model.alpha, gamma, 20000)
        theirs = zoo_topics.document_bounds(model, guide, x, num_particles=20000)
    assert torch.allclose(ours, theirs, atol=0.5), (ours, theirs)


@pytest.mark.parametrize("guide_name", GUIDES)
def test_batch_norm_options(guide_name, seed):
    # True: normalized locations with unit spread; "affine": a learned scale and shift on top
    model = get_model("lda", input_dim=30, num_topics=4)
    plain = get_guide(guide_name, model, batch_norm=True)
    affine = get_guide(guide_name, model, batch_norm="affine")
    (norm,) = plain.norms.values()
    (learned,) = affine.norms.values()
    assert not norm.affine and learned.affine and learned.weight.requires_grad
    pyro.enable_validation(True)
    x = torch.poisson(torch.full((6, 30), 2.0))
    with pyro.settings.context(module_local_params=True):
        loss = Trace_ELBO()(model, affine)
        loss(x).backward()
    assert learned.weight.grad is not None and torch.isfinite(learned.weight.grad).all()
    with pytest.raises(ValueError, match="batch_norm"):
        get_guide(guide_name, model, batch_norm="shift")
