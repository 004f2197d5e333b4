"""The traced loss (``jit=True``, zoo/infer/traced.py): the same loss and gradients as the plain
path, bit for bit, step after step, with BatchNorm statistics, dropout and random draws; the
same training history through the engine; the plain path where a trace would be wrong."""

import copy
import warnings

import pyro
import pytest
import torch

from zoo.data import Dataset, TensorSplit
from zoo.infer import get_objective
from zoo.infer.traced import TracedLoss
from zoo.poutine import scale_latents
from zoo.registry import default_guide_options, get_guide, get_model
from zoo.train import fit

CLOCKS = ("seconds", "cpu_seconds", "points_per_second")


def pair(model_name, guide_name, **model_options):
    pyro.set_rng_seed(0)
    model = get_model(model_name, **model_options)
    guide = get_guide(guide_name, model, **default_guide_options(model, guide_name))
    return model, guide


@pytest.mark.parametrize("model_name,guide_name,objective", [
    ("vae", "diagonal_normal", "meanfield"),
    ("vae", "low_rank_normal", "iwae"),
    ("dlgm", "chain_normal", "meanfield"),
    ("prodlda", "diagonal_normal", "meanfield"),  # BatchNorm heads and decoder, dropout
    ("lda", "dirichlet", "meanfield"),  # a global site, Dirichlet draws
    ("nvdm", "householder", "iwae"),
    ("gmm", "categorical", "meanfield"),
])
def test_traced_loss_and_gradients_are_the_plain_ones(model_name, guide_name, objective):
    model, guide = pair(model_name, guide_name)
    x = model.example_batch(8)
    twin_model, twin_guide = copy.deepcopy(model), copy.deepcopy(guide)
    make = get_objective
    plain = make(objective, max_plate_nesting=model.max_plate_nesting)(model, guide)
    traced = make(objective, max_plate_nesting=model.max_plate_nesting, jit=True)(
        twin_model, twin_guide)
    assert isinstance(traced, TracedLoss)
    with pyro.validation_enabled(False):
        for step in range(4):  # the first call traces; the later ones replay
            pyro.set_rng_seed(10 + step)
            a = plain(x, num_data=100)
            a.backward()
            drawn = torch.get_rng_state()
            pyro.set_rng_seed(10 + step)
            b = traced(x, num_data=100)
            b.backward()
            assert torch.equal(a, b), step
            assert torch.equal(drawn, torch.get_rng_state())  # the same draws, no more
            for (name, p), q in zip(plain.named_parameters(), traced.parameters()):
                assert (p.grad is None) == (q.grad is None), name
                assert p.grad is None or torch.equal(p.grad, q.grad), (step, name)
            for (name, u), v in zip(plain.named_buffers(), traced.buffers()):
                assert torch.equal(u, v), (step, name)  # BatchNorm statistics, updated once
    assert traced.traced_calls == 4 and traced.plain_calls == 0


def test_the_trace_draws_nothing_and_leaves_the_buffers_as_they_were():
    model, guide = pair("prodlda", "diagonal_normal")
    x = model.example_batch(8)
    traced = get_objective("meanfield", max_plate_nesting=1, jit=True)(model, guide)
    before = [b.clone() for b in traced.buffers()]
    pyro.set_rng_seed(3)
    state = torch.get_rng_state()
    with pyro.validation_enabled(False):
        graph = traced._trace(x, 100, traced._state_tensors())
    assert torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(before, traced.buffers()))
    assert graph is not None


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 12, generator=g)
    x = probs[torch.randint(0, 4, (300,), generator=g)]
    return Dataset("toy", TensorSplit(x[:240], "dynamic"), TensorSplit(x[240:], "fixed"), "image")


def train(data, jit, **options):
    model, guide = pair("vae", "householder", input_dim=12, latent_dim=3, hidden_dims=(16,))
    history = fit(model, guide, data, objective="meanfield", epochs=2, batch_size=100, seed=1,
                  lr=1e-2, progress=False, validate=False,
                  objective_options={"jit": True} if jit else {}, **options)
    return model, guide, [{k: v for k, v in h.items() if k not in CLOCKS} for h in history]


@pytest.mark.parametrize("options", [{}, {"kl_warmup": 1.0}])
def test_the_engine_trains_the_same_run_with_the_trace(data, options):
    """240 points in batches of 100: two signatures (100 and 40), each traced once. With KL
    warm-up the loss runs plain while its weight rises (an effect handler), then traced."""
    m1, g1, plain = train(data, jit=False, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m2, g2, traced = train(data, jit=True, **options)
    assert plain == traced
    for p, q in zip([*m1.parameters(), *g1.parameters()], [*m2.parameters(), *g2.parameters()]):
        assert torch.equal(p, q)
    handler = [w for w in caught if "effect handler" in str(w.message)]
    assert bool(handler) == bool(options)


def test_the_plain_path_is_taken_with_a_warning_where_a_trace_would_be_wrong():
    model, guide = pair("vae", "diagonal_normal")
    x = model.example_batch(4)
    traced = get_objective("meanfield", max_plate_nesting=1, jit=True)(model, guide)
    with pytest.warns(UserWarning, match="validation is on"):
        with pyro.validation_enabled(True):
            traced(x, num_data=10)
    with pyro.validation_enabled(False):
        with pytest.warns(UserWarning, match="effect handler"):
            with scale_latents(scale=0.5):
                traced(x, num_data=10)
        with torch.no_grad(), pytest.warns(UserWarning, match="gradients are off"):
            traced(x, num_data=10)
        traced(x, num_data=10)
    assert traced.plain_calls == 3 and traced.traced_calls == 1


def test_a_pair_that_cannot_be_traced_is_named():
    # torch's KL of a low-rank Gaussian from a full-covariance one reads traced shapes as ints
    model, guide = pair("ctm", "low_rank_normal")
    traced = get_objective("meanfield", max_plate_nesting=1, jit=True)(model, guide)
    with pyro.validation_enabled(False), pytest.raises(
            RuntimeError, match="model 'ctm' with guide 'low_rank_normal'"):
        traced(model.example_batch(4), num_data=10)


def test_full_covariance_kls_are_traced_and_are_torchs():
    """ctf's Gaussians against CTM's learned full-covariance prior: the KL is guides/ctf.py's
    `mvn_kl`, the same numbers as torch's closed form, and traceable."""
    from torch.distributions import kl_divergence
    from torch.distributions.kl import _kl_multivariatenormal_multivariatenormal

    from guides.ctf import mvn_kl

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, 4, generator=g), torch.randn(4, 4, generator=g)
    p = pyro.distributions.MultivariateNormal(torch.randn(5, 4, generator=g),
                                              scale_tril=torch.tril(a, -1) + 2 * torch.eye(4))
    q = pyro.distributions.MultivariateNormal(torch.randn(4, generator=g),
                                              scale_tril=torch.tril(b, -1) + torch.eye(4))
    expected = _kl_multivariatenormal_multivariatenormal(p, q)
    assert torch.equal(mvn_kl(p, q), expected) and torch.equal(kl_divergence(p, q), expected)
    model, guide = pair("ctm", "ctf")
    x = model.example_batch(8)
    twin = copy.deepcopy(model), copy.deepcopy(guide)
    plain = get_objective("meanfield", max_plate_nesting=1)(model, guide)
    traced = get_objective("meanfield", max_plate_nesting=1, jit=True)(*twin)
    with pyro.validation_enabled(False):
        pyro.set_rng_seed(1)
        expected = plain(x, num_data=50)
        pyro.set_rng_seed(1)
        assert torch.equal(traced(x, num_data=50), expected) and traced.traced_calls == 1


def test_iwae_dreg_refuses_the_trace():
    with pytest.raises(ValueError, match="iwae-dreg cannot take jit=True"):
        get_objective("iwae-dreg", jit=True)


def test_a_plain_run_resumes_with_the_trace_exactly(data, tmp_path):
    """The traced loss module checkpoints as the plain one does (model and guide only)."""
    _, _, straight = train(data, jit=False)
    model, guide = pair("vae", "householder", input_dim=12, latent_dim=3, hidden_dims=(16,))
    common = dict(objective="meanfield", batch_size=100, seed=1, lr=1e-2, progress=False,
                  validate=False, out_dir=tmp_path)
    fit(model, guide, data, epochs=1, **common)
    model, guide = pair("vae", "householder", input_dim=12, latent_dim=3, hidden_dims=(16,))
    history = fit(model, guide, data, epochs=2, resume=True, objective_options={"jit": True},
                  **common)
    assert [{k: v for k, v in h.items() if k not in CLOCKS} for h in history] == straight


def test_the_optimizing_executor_agrees_to_rounding():
    """jit="optimized": TorchScript's own autograd formulas after its profiling runs: the
    same loss, gradients within float32 rounding, step after step."""
    model, guide = pair("prodlda", "diagonal_normal")
    x = model.example_batch(8)
    plain = get_objective("meanfield", max_plate_nesting=1)(model, guide)
    traced = get_objective("meanfield", max_plate_nesting=1, jit="optimized")(
        copy.deepcopy(model), copy.deepcopy(guide))
    assert traced.optimize
    with pyro.validation_enabled(False):
        for step in range(6):  # past the profiling runs
            pyro.set_rng_seed(step)
            a = plain(x, num_data=100)
            grads_a = torch.autograd.grad(a, list(plain.parameters()), allow_unused=True)
            pyro.set_rng_seed(step)
            b = traced(x, num_data=100)
            grads_b = torch.autograd.grad(b, list(traced.parameters()), allow_unused=True)
            assert torch.allclose(a, b, rtol=1e-6)
            for u, v in zip(grads_a, grads_b):
                assert (u is None) == (v is None)
                if u is not None:
                    assert torch.allclose(u, v, rtol=1e-5, atol=1e-5 * u.abs().max())


@pytest.mark.parametrize("value", ["yes", 2, None])
def test_a_jit_mode_that_does_not_exist_is_refused(value):
    with pytest.raises(ValueError, match="jit must be False, True"):
        get_objective("meanfield", jit=value)
