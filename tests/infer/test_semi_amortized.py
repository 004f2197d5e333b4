"""Semi-amortized training (zoo/infer/semi_amortized.py) and natural-gradient topic steps
(zoo/models/natural_steps.py) on LDA with the Dirichlet guide: the E-step targets, the encoder's
regression, the SVI step against a NumPy reference, its once-per-backward rule, pooling and exact
resume."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from tests.models.test_lda import small_lda, synthetic_corpus
from zoo.infer import training_loss
from zoo.registry import get_guide


def test_local_steps_train_on_coordinate_ascent_and_evaluate_the_encoder(seed):
    model, _, x = synthetic_corpus(num_docs=8)
    guide = get_guide("dirichlet", model, local_steps=20)
    loss_fn = training_loss(Trace_ELBO(max_plate_nesting=1), model, guide)
    with torch.no_grad():
        expected_logs = {"topic_words": guide.expected_log("topic_words")}
        target = model.local_update(x, torch.ones(8, 3), expected_logs, 20)
    # with gradients: the encoder's factor is there
    trace = poutine.trace(loss_fn.guide_program).get_trace(x)
    used = trace.nodes["doc_topics"]["fn"].concentration.detach()
    assert torch.allclose(used, target.clamp_min(guide.min_concentration), rtol=1e-4)
    assert trace.nodes["doc_topics_amortization"]["infer"]["is_auxiliary"]
    # the encoder learns from a zero-valued factor: the loss is the ELBO, the gradient exists
    loss = loss_fn(x)
    loss.backward()
    assert guide.heads["doc_topics"].weight.grad.abs().sum() > 0
    guide.eval()  # held-out figures measure the encoder alone
    with torch.no_grad():
        q = poutine.trace(guide).get_trace(x).nodes["doc_topics"]["fn"]
        encoder = guide.local_concentration(guide.encoder_parameters(x)["doc_topics"])
    assert torch.allclose(q.concentration, encoder)
    broken = small_lda()
    broken.conjugate_updates = False
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
    loss_fn = training_loss(Trace_ELBO(max_plate_nesting=1), model, guide)
    before = guide.global_concentration("topic_words").clone()
    expected = numpy_vb_step(x, before, 0.3, 0.3, steps=20)
    loss_fn(x).backward()
    after = guide.global_concentration("topic_words").clone()
    assert np.allclose(after.double().numpy(), expected, rtol=1e-4)
    assert int(loss_fn.natural.steps) == 1
    assert guide.posterior_mean("topic_words").shape == (3, 12)

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
    loss_fn = training_loss(Trace_ELBO(max_plate_nesting=1), model, guide)
    Trace_ELBO(max_plate_nesting=1).loss(model, loss_fn.guide_program, x[:8], num_data=40)
    loss_fn(x[:8], num_data=40)  # no backward
    guide.eval()
    loss_fn(x[:8], num_data=40).backward()
    guide.train()
    assert torch.equal(guide.global_concentration("topic_words"), start)
    for vectorize in (False, True):
        particles = training_loss(Trace_ELBO(num_particles=3, vectorize_particles=vectorize,
                                             max_plate_nesting=1), model, guide)
        particles.natural.load_state_dict(loss_fn.natural.state_dict())
        steps = int(particles.natural.steps)
        particles(x[:8], num_data=40).backward()
        assert int(particles.natural.steps) == steps + 1
        loss_fn.natural.load_state_dict(particles.natural.state_dict())
    # a remainder batch of 2 after batches of 8: a quarter of the step
    current = guide.global_concentration("topic_words").clone()
    with torch.no_grad():
        expected_logs = {"topic_words": guide.expected_log("topic_words")}
        gamma = model.local_update(x[8:10], torch.ones(2, 3), expected_logs, 20)
        gamma = guide.local_concentration(guide.raw_from_concentration(gamma))
        target = model.global_update(x[8:10], gamma, expected_logs, 20.0)["topic_words"]
    rho = (int(loss_fn.natural.steps) + 1 + 1.0) ** -0.7 * 2 / 8
    loss_fn(x[8:10], num_data=40).backward()
    assert torch.allclose(guide.global_concentration("topic_words"),
                          (1 - rho) * current + rho * target, rtol=1e-5)


def test_natural_steps_pool_batches(seed):
    """With natural_batch = 16 and batches of 8, the topics stay put after one batch and then
    step towards the pooled estimate: the documents-weighted mean of the two batches'."""
    model, _, x = synthetic_corpus(num_docs=40)
    guide = natural_guide(model, natural_offset=0.0, natural_decay=0.0, natural_batch=16)
    loss_fn = training_loss(Trace_ELBO(max_plate_nesting=1), model, guide)
    start = guide.global_concentration("topic_words").clone()
    targets = []
    for batch in (x[:8], x[8:16]):
        with torch.no_grad():
            expected_logs = {"topic_words": guide.expected_log("topic_words")}
            gamma = model.local_update(batch, torch.ones(8, 3), expected_logs, 20)
            gamma = guide.local_concentration(guide.raw_from_concentration(gamma))
            targets.append(model.global_update(batch, gamma, expected_logs, 5.0)["topic_words"])
        loss_fn(batch, num_data=40).backward()
        if len(targets) == 1:
            assert torch.equal(guide.global_concentration("topic_words"), start)
    # rho = 1 (tau = kappa = 0): the pooled estimate, eta + (40 / 16) * both batches' counts
    assert torch.allclose(guide.global_concentration("topic_words"),
                          (targets[0] + targets[1]) / 2, rtol=1e-5)
    assert int(loss_fn.natural.steps) == 1


def test_natural_steps_resume_exactly(tmp_path):
    """The topics are guide state and the step count the objective's, both in the checkpoint:
    a run resumed from its checkpoint ends where an uninterrupted run does."""
    from zoo.data import Dataset, TensorSplit
    from zoo.runs import CHECKPOINT, load_checkpoint
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
    def steps(out_dir):
        return int(load_checkpoint(out_dir / CHECKPOINT)["objective"]["natural.steps"])

    assert steps(tmp_path / "split") == steps(tmp_path / "whole") == 8
    assert torch.equal(resumed.global_concentration("topic_words"),
                       whole.global_concentration("topic_words"))


def test_natural_step_needs_a_global_update():
    broken = small_lda()
    broken.conjugate_updates = False
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
    loss_fn = training_loss(Trace_ELBO(max_plate_nesting=1), small_lda(), guide)
    assert loss_fn.natural.batch_documents == LDA.default_natural_options["natural_batch"]
