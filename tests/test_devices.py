"""The device paths, checked on the CPU, so that a device mix-up in shared code is most likely
caught here and not only by ``tests/cuda/`` on a machine with a GPU.

Two stand-ins for a second device:

- **float64 models and guides with float32 data.** Code that builds a tensor without the
  model's device usually builds it without its type too; with the model converted to float64
  and the data left in float32, every such tensor is a type mismatch that fails here. The
  engine, evaluation, importance sampling, topic summaries, sampling and figures run on such a
  pair for every registered model, and every guide on one model.
- **the meta device.** torch's ``meta`` tensors have shapes and no values, and refuse to mix
  with CPU tensors exactly as CUDA tensors do: a training step and a nested-VI sweep run with
  every module on ``meta`` fail on any constant made on the CPU. (A step that reads a value back
  on the host cannot run there and is skipped with that reason: on a GPU it is a
  synchronization, not an error.)
"""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from tests.device_cases import MODELS, load_data, small_config
from zoo import plots, runs
from zoo.data.dataset import DeviceSplit, cpu_generator
from zoo.evaluation import heldout_elbo
from zoo.infer import get_objective
from zoo.infer.importance import log_likelihood, sample_posterior
from zoo.infer.nested import NestedObjective, evaluate_nested
from zoo.infer.nested_programs import NestedPrograms
from zoo.models.base import ZooModel, like_module
from zoo.models.targets import INIT_SCALES, TARGETS, GeometricPath, get_target
from zoo.registry import (
    default_guide_options,
    find_model,
    get_guide,
    get_model,
    list_guides,
)
from zoo.train import fit


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            pyro.set_rng_seed(0)
            cache[name] = load_data(name, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def build(name, data, guide_name=None, dtype=torch.float64):
    """A small model of ``name`` for ``data`` and its guide (default: the model's default),
    converted to ``dtype``."""
    pyro.set_rng_seed(0)
    cls = find_model(name)
    model = get_model(name, **cls.data_config(data), **small_config(name))
    guide_name = guide_name or model.default_guide
    options = default_guide_options(model, guide_name)
    guide = get_guide(guide_name, model, **options)
    return model.to(dtype), guide.to(dtype)


def train_float64(name, data, guide_name=None, epochs=1):
    """Train a float64 pair on float32 data; returns (model, guide, history, dtypes seen)."""
    model, guide = build(name, data, guide_name)
    seen = []
    hook = model.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].dtype) if args and args[0] is not None else None)
    batch = 8 if model.graph_input else 64
    history = fit(model, guide, data, epochs=epochs, batch_size=batch, eval_batch_size=64,
                  seed=0, progress=False)
    hook.remove()
    return model, guide, history, seen


def assert_float64(*modules):
    for module in modules:
        for name, p in module.named_parameters():
            assert p.dtype == torch.float64, f"{type(module).__name__}.{name} is {p.dtype}"


@pytest.fixture(scope="module")
def trained(datasets):
    """``trained(name)``: the float64 default pair of ``name`` after one epoch on float32 data
    (``fit`` checked the batches it saw), cached per module."""
    cache = {}

    def get(name):
        if name not in cache:
            data = datasets(name)
            model, guide, history, seen = train_float64(name, data)
            cache[name] = (model, guide, data, history, seen)
        return cache[name]

    return get


# ------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("name", MODELS)
def test_engine_moves_float32_data_to_a_float64_pair_of_every_model(name, trained):
    model, guide, data, history, seen = trained(name)
    assert seen and set(seen) == {torch.float64}, f"the model saw batches of {set(seen)}"
    assert_float64(model, guide)
    assert math.isfinite(history[-1]["train_loss"])
    assert math.isfinite(history[-1]["heldout_elbo"])


@pytest.mark.parametrize("guide_name", list_guides("vae"))
def test_every_guide_trains_and_is_evaluated_on_a_float64_vae(guide_name, datasets):
    data = datasets("vae")
    model, guide, history, seen = train_float64("vae", data, guide_name)
    assert set(seen) == {torch.float64}
    assert_float64(model, guide)
    result = log_likelihood(model, guide, data.test.dense()[:6], num_particles=64,
                            chunk_size=24, batch_size=3)
    assert torch.isfinite(result.log_likelihood).all() and torch.isfinite(result.ess).all()
    assert torch.isfinite(result.khat).all()


# --------------------------------------------------------------------- evaluation
@pytest.mark.parametrize("name", MODELS)
def test_heldout_elbo_and_importance_sampling_on_a_float64_pair(name, trained):
    model, guide, data, _, _ = trained(name)
    pyro.set_rng_seed(1)
    assert math.isfinite(heldout_elbo(model, guide, data.test, batch_size=32))
    local = all(s.local for s in model.latent_sites())
    # joint weights (LDA's global topics) need the whole split as one batch
    result = log_likelihood(model, guide, data.test, num_particles=64,
                            chunk_size=32 if local else 8,
                            batch_size=64 if local else len(data.test))
    for value in (result.log_likelihood, result.stderr, result.ess, result.khat):
        assert value.device.type == "cpu" and value.dtype == torch.float32
    assert torch.isfinite(result.log_likelihood).all() and (result.ess >= 1 - 1e-4).all()
    summary = result.summary()
    assert math.isfinite(summary["is_log_likelihood"]) and math.isfinite(summary["ess_mean"])


def test_posterior_draws_on_a_float64_pair(trained):
    model, guide, data, _, _ = trained("vae")
    idata = sample_posterior(model, guide, data.test.dense()[:3], num_samples=200, seed=0)
    draws = idata.posterior["z"].values
    assert draws.shape == (1, 200, 3, model.latent_dim) and np.isfinite(draws).all()


@pytest.mark.parametrize("name", [m for m in MODELS if find_model(m).topic_model
                                  and not find_model(m).graph_input])
def test_topic_summaries_and_figures_on_a_float64_pair(name, trained):
    from zoo.metrics import top_words
    from zoo.topics import has_closed_form_refinement, topic_word, topics_summary

    model, guide, data, _, _ = trained(name)
    pyro.set_rng_seed(2)
    refine = 2 if guide.refinable or has_closed_form_refinement(model, guide) else 0
    summary = topics_summary(model, guide, data, num_particles=2, refine_steps=refine)
    assert summary["perplexity"] > 1 and summary.get("perplexity_refined", 2) > 1
    assert -1 <= summary["npmi"] <= 1 and len(summary["top_words"]) == 3
    beta = topic_word(model, guide)
    assert beta.device.type == "cpu"
    plots.plot_topic_top_words(beta, data.meta["vocab"], n_words=4)
    corr = model.topic_correlations()
    if corr is not None:
        labels = [" ".join(words) for words in top_words(beta, data.meta["vocab"], 3)]
        plots.plot_topic_correlations(corr, labels)
    plots.plt.close("all")


@pytest.mark.parametrize("name", [m for m in MODELS if find_model(m).observation_mean
                                  is not ZooModel.observation_mean])  # models that draw images
def test_samples_and_reconstructions_of_a_float64_image_model(name, trained):
    """What ``zoo sample`` draws: prior means and reconstructions of held-out images (the
    batch taken to the model's type), then the figures."""
    model, guide, data, _, _ = trained(name)
    with torch.no_grad():
        prior = model.observation_mean(poutine.trace(model).get_trace(None, batch_size=6))
        x = like_module(data.test.batch(torch.arange(6)), model)
        posterior = poutine.trace(guide).get_trace(x)
        recon = model.observation_mean(
            poutine.trace(poutine.replay(model, trace=posterior)).get_trace(x))
    assert prior.dtype == recon.dtype == torch.float64
    shape = data.meta["image_shape"]
    plots.image_grid(prior, shape)
    plots.reconstruction_grid(x, recon, shape)
    plots.plt.close("all")


def test_figures_take_tensors_that_need_grad_or_other_types():
    images = torch.rand(4, 64, dtype=torch.float64, requires_grad=True)
    assert plots.image_grid(images, (8, 8)) is not None
    assert plots.reconstruction_grid(images, images.half(), (8, 8)) is not None
    assert plots._as_array(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float64
    plots.plt.close("all")


# ---------------------------------------------------------------------------- nested VI
@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("objective,resample", [("nvi-rkl", True), ("nvi-fkl", False),
                                                ("avo", False)])
def test_nested_targets_run_in_float64(target, objective, resample):
    pyro.set_rng_seed(0)
    path = GeometricPath(get_target(target), INIT_SCALES[target])
    schedule = "linear" if objective == "avo" else "learned"
    programs = NestedPrograms(path, 3, schedule).double()
    nested = NestedObjective(objective, resample=resample)
    sweep = nested(programs, 32, keep_particles=True)
    assert all(z.dtype == torch.float64 for z in sweep.particles)
    assert sweep.loss.dtype == torch.float64 and torch.isfinite(sweep.loss)
    result = evaluate_nested(programs, nested, num_particles=16, num_batches=2)
    assert math.isfinite(result["log_z"])
    plots.plot_nested_levels(programs, nested, num_particles=64)
    plots.plt.close("all")


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("objective", ["nvi-rkl", "nvi-fkl", "avo"])
def test_nested_sweep_makes_nothing_on_the_cpu(target, objective):
    """Every module on the meta device: the initial draws, the kernels' noise and the targets'
    constants must all be made beside the parameters (a CPU constant fails here as on a GPU)."""
    path = GeometricPath(get_target(target), INIT_SCALES[target])
    programs = NestedPrograms(path, 3, "linear" if objective == "avo" else "learned").to("meta")
    with pyro.validation_enabled(False):
        sweep = NestedObjective(objective)(programs, 16, keep_particles=True)
    assert sweep.loss.device.type == "meta" and sweep.log_weight.device.type == "meta"
    assert all(z.device.type == "meta" for z in sweep.particles)


PAIRS = [(m, g) for m in MODELS for g in list_guides(m)]
#: errors of a step that cannot run on meta tensors for a reason other than the device
NOT_ON_META = ("cannot be called on meta tensors", "Cannot copy out of meta tensor",
               "Meta tensors", "meta tensors", "'SparseMeta' backend", "Meta kernel")


@pytest.mark.parametrize("model_name,guide_name", PAIRS)
def test_a_training_step_makes_nothing_on_the_cpu(model_name, guide_name):
    pyro.set_rng_seed(0)
    model = get_model(model_name)
    guide = get_guide(guide_name, model, **default_guide_options(model, guide_name))
    x = model.example_batch(8)
    model.to("meta")
    guide.to("meta")
    loss_fn = get_objective("meanfield", max_plate_nesting=model.max_plate_nesting)(model, guide)
    try:
        with pyro.validation_enabled(False):
            loss = loss_fn(x.to("meta"), num_data=100)
            loss.backward()
    except (RuntimeError, NotImplementedError) as error:
        if any(reason in str(error) for reason in NOT_ON_META):
            pytest.skip(f"the step reads a value back on the host or has no meta kernel "
                        f"({str(error).splitlines()[0][:80]})")
        raise
    assert loss.device.type == "meta"
    assert all(p.grad is not None and p.grad.device.type == "meta"
               for p in guide.parameters() if p.requires_grad and p.grad is not None)


def test_ctm_topic_correlations_make_nothing_on_the_cpu():
    """The centring matrix is made on the covariance's device: a CPU `torch.eye` here once made
    `zoo train ctm` on a GPU fail writing topic_correlations.png."""
    model = get_model("ctm", input_dim=20, num_topics=4).to("meta")
    assert model.topic_correlations().device.type == "meta"


# ------------------------------------------------------------------------- checkpoints
def test_a_checkpoint_loads_with_map_location_into_modules_of_another_type(tmp_path, datasets):
    """Written by a float64 run, read with map_location (a device, a string, a function): into
    float64 modules it is the trained pair (the same held-out ELBO, bit for bit); into float32
    modules, the same weights rounded."""
    data = datasets("vae")
    model, guide = build("vae", data)
    fit(model, guide, data, epochs=1, batch_size=64, seed=0, progress=False, out_dir=tmp_path)
    pyro.set_rng_seed(5)
    expected = heldout_elbo(model, guide, data.test)
    for location in (torch.device("cpu"), "cpu", lambda storage, _: storage):
        for dtype in (torch.float64, torch.float32):
            fresh_model, fresh_guide = build("vae", data, dtype=dtype)
            ckpt = runs.load_checkpoint(tmp_path / runs.CHECKPOINT, fresh_model, fresh_guide,
                                        map_location=location)
            assert ckpt["epoch"] == 1
            for trained_p, loaded in zip(model.parameters(), fresh_model.parameters()):
                assert loaded.dtype == dtype and torch.equal(loaded, trained_p.to(dtype))
            pyro.set_rng_seed(5)
            value = heldout_elbo(fresh_model, fresh_guide, data.test)
            if dtype == torch.float64:
                assert value == expected
            else:  # other draws (float32 noise), the same model: within Monte Carlo error
                assert value == pytest.approx(expected, abs=0.5)


def test_rng_states_restore_from_a_checkpoint_mapped_to_another_device(tmp_path, datasets):
    """A resume with map_location=<a GPU> hands the saved RNG states over on that device; torch
    takes CPU byte tensors only, so they are brought back, and the streams continue as saved."""
    data = datasets("vae")
    model, guide = build("vae", data, dtype=torch.float32)
    fit(model, guide, data, epochs=1, batch_size=64, seed=0, progress=False, out_dir=tmp_path)
    saved = torch.load(tmp_path / runs.CHECKPOINT, weights_only=False)["rng"]
    runs.set_rng_state(saved, generator := torch.Generator())
    expected = torch.rand(3), torch.rand(3, generator=generator)

    class OnAnotherDevice:  # what map_location=<a GPU> gives: usable only after .cpu()
        def __init__(self, state):
            self.state = state

        def cpu(self):
            return self.state

    mapped = {key: OnAnotherDevice(value) if torch.is_tensor(value) else value
              for key, value in saved.items()}
    torch.manual_seed(123)
    runs.set_rng_state(mapped, generator := torch.Generator())
    assert torch.equal(torch.rand(3), expected[0])
    assert torch.equal(torch.rand(3, generator=generator), expected[1])


# ---------------------------------------------------------------------------- data
def test_a_device_split_gives_a_split_that_draws_a_cpu_generator_derived_from_the_devices():
    from zoo.data.biterms import BitermSplit

    tokens = [np.array([0, 1, 2, 1]), np.array([2, 3, 0]), np.array([1, 1, 3, 2]),
              np.array([0, 2])]
    split = BitermSplit(tokens, vocab_size=4, docs_per_corpus=2, resample=True)
    assert split.uses_generator and not BitermSplit(tokens, 4).uses_generator
    # the derived stream is a function of the device generator's state, and advances it
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = torch.rand(3, generator=cpu_generator(a))
    assert torch.equal(first, torch.rand(3, generator=cpu_generator(b)))
    assert not torch.equal(first, torch.rand(3, generator=cpu_generator(a)))
    # a CPU generator is passed as it is (the CPU path draws what it always drew)
    moved = DeviceSplit(split, torch.device("cpu"))
    x = moved.batch(torch.arange(2), torch.Generator().manual_seed(4))
    y = split.batch(torch.arange(2), torch.Generator().manual_seed(4))
    assert torch.equal(x.to_dense(), y.to_dense())
