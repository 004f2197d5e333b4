import json
import warnings

import pyro
import pytest
import torch
from pyro.infer.util import is_validation_enabled

from zoo.data import Dataset, TensorSplit
from zoo.evaluation import heldout_elbo
from zoo.registry import get_guide, get_model
from zoo.runs import CHECKPOINT, METRICS, load_checkpoint
from zoo.train import SingleStepEpochs, TrainingDiverged, fit


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 12, generator=g)
    labels = torch.randint(0, 4, (300,), generator=g)
    x = probs[labels]
    return Dataset("toy", TensorSplit(x[:240], "dynamic"), TensorSplit(x[240:], "fixed"), "image")


def make_pair(guide="householder"):
    model = get_model("vae", input_dim=12, latent_dim=3, hidden_dims=(16,))
    return model, get_guide(guide, model, hidden_dims=(16,), num_flows=2) \
        if guide == "householder" else get_guide(guide, model, hidden_dims=(16,))


def train(out_dir, epochs, resume=False, **kw):
    torch.manual_seed(123)  # the same initial weights in every call
    model, guide = make_pair()
    history = fit(model, guide, kw.pop("data"), epochs=epochs, batch_size=32, lr=1e-2, seed=7,
                  out_dir=out_dir, resume=resume, progress=False, **kw)
    return model, guide, history


def test_resume_continues_exactly(tmp_path, data):
    m2, g2, h2 = train(tmp_path / "straight", 2, data=data)
    train(tmp_path / "split", 1, data=data)
    m1, g1, h1 = train(tmp_path / "split", 2, resume=True, data=data)
    for a, b in zip([*m2.state_dict().values(), *g2.state_dict().values()],
                    [*m1.state_dict().values(), *g1.state_dict().values()]):
        assert torch.equal(a, b)
    clocks = ("seconds", "cpu_seconds", "points_per_second")
    assert [{k: v for k, v in h.items() if k not in clocks} for h in h1] == \
        [{k: v for k, v in h.items() if k not in clocks} for h in h2]
    lines = (tmp_path / "split" / METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_checkpoint_holds_everything_needed(tmp_path, data):
    train(tmp_path, 1, data=data)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert {"model", "guide", "optimizer", "epoch", "history", "rng"} <= set(ckpt)
    assert ckpt["epoch"] == 1 and set(ckpt["rng"]) >= {"python", "numpy", "torch", "data"}
    assert not list(tmp_path.glob("*.tmp")), "a temporary checkpoint file was left behind"


@pytest.mark.parametrize("validate,message", [
    (False, r"Loss became nan at epoch 2, step 3\. The last good checkpoint is kept"),
    (True, r"non-finite parameters at epoch 2, step 3 \(Expected parameter logits.*\)\. "
           r"The last good checkpoint is kept"),
])
def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path, data, validate, message):
    pyro.enable_validation(validate)
    torch.manual_seed(0)
    model, guide = make_pair("diagonal_normal")
    fit(model, guide, data, epochs=1, batch_size=32, out_dir=tmp_path, progress=False)
    before = load_checkpoint(tmp_path / CHECKPOINT)
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 3rd decoder call of epoch 2 returns NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    model.decoder.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match=message), warnings.catch_warnings():
        # Pyro's own "Encountered NaN: loss" warning precedes our error when validation is off.
        warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
        fit(model, guide, data, epochs=2, batch_size=32, out_dir=tmp_path, resume=True,
            progress=False)
    after = load_checkpoint(tmp_path / CHECKPOINT)
    assert after["epoch"] == 1
    for key, value in before["guide"].items():
        assert torch.equal(value, after["guide"][key])
    model2, guide2 = make_pair("diagonal_normal")
    load_checkpoint(tmp_path / CHECKPOINT, model2, guide2)  # still loadable


def test_training_improves_heldout_elbo_with_each_objective(data):
    for objective in ["trace", "meanfield", "tracegraph"]:
        torch.manual_seed(0)
        model, guide = make_pair("diagonal_normal")
        untrained = heldout_elbo(model, guide, data.test)
        history = fit(model, guide, data, epochs=8, batch_size=32, lr=1e-2, objective=objective,
                      progress=False)
        assert history[-1]["heldout_elbo"] > untrained + 1.0, objective


def test_minibatch_loss_is_unbiased_for_the_full_data_loss(data):
    """The data plate scales a batch's log-densities by N / B: the mean over batches of the
    minibatch loss equals the full-data loss (here exactly, with one fixed latent draw)."""
    from zoo.infer import get_objective

    model, guide = make_pair("diagonal_normal")
    x = data.train.dense().bernoulli(generator=torch.Generator().manual_seed(0))
    loss_fn = get_objective("trace", max_plate_nesting=1)(model, guide)
    eps = torch.randn(len(x), 3)

    def fixed_noise(start):  # the same reparameterization noise for each data point
        def fn(msg):
            if msg["name"] == "z" and not msg["is_observed"]:
                base = msg["fn"].base_dist
                msg["value"] = base.loc + base.scale * eps[start:start + len(base.loc)]
        return fn

    with torch.no_grad():
        full = _loss_with(loss_fn, guide, x, len(x), fixed_noise(0))
        batches = [_loss_with(loss_fn, guide, x[i:i + 40], len(x), fixed_noise(i))
                   for i in range(0, len(x), 40)]
    torch.testing.assert_close(torch.stack(batches).mean(), full, rtol=1e-5, atol=1e-3)


def _loss_with(loss_fn, guide, x, num_data, fn):
    from pyro import poutine
    from pyro.poutine.messenger import Messenger

    class SetNoise(Messenger):
        def _pyro_sample(self, msg):
            fn(msg)

    with SetNoise():
        tr = poutine.trace(guide).get_trace(x, num_data=num_data)
    return loss_fn.elbo.differentiable_loss(
        loss_fn.model, poutine.replay(guide, trace=tr), x, num_data=num_data)


def test_cuda_is_refused_clearly_without_a_gpu(data):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model, guide = make_pair("diagonal_normal")
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        fit(model, guide, data, epochs=1, device="cuda", progress=False)


@pytest.mark.parametrize("validate", [False, True])
def test_validate_option_holds_during_training_and_is_restored(data, validate):
    model, guide = make_pair("diagonal_normal")
    seen = []
    model.register_forward_pre_hook(lambda *_: seen.append(is_validation_enabled()))
    with pyro.validation_enabled(not validate):
        fit(model, guide, data, epochs=1, batch_size=64, validate=validate, progress=False)
        assert is_validation_enabled() is (not validate)
    assert seen and set(seen) == {validate}


def test_kl_warmup_weights_the_latents_as_the_annealed_objective_does(data):
    # One batch per epoch and kl_warmup = 4 epochs: the first step trains with beta = 1/4,
    # exactly what the "annealed" objective at kl_weight 1/4 computes.
    def one_step(**options):
        torch.manual_seed(123)
        model, guide = make_pair("diagonal_normal")
        history = fit(model, guide, data, epochs=1, batch_size=len(data.train), lr=1e-2,
                      seed=7, progress=False, **options)
        return [*model.parameters(), *guide.parameters()], history

    warm, history = one_step(objective="trace", kl_warmup=4)
    annealed, _ = one_step(objective="annealed", objective_options={"kl_weight": 0.25})
    plain, _ = one_step(objective="trace")
    assert history[0]["kl_weight"] == 0.25
    for a, b in zip(warm, annealed):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(warm, plain))


def test_kl_warmup_rises_linearly_step_by_step_then_stays_at_one():
    from zoo.schedules import LinearWarmup, Progress

    warmup = LinearWarmup(epochs=2)  # 2 epochs of 4 steps: 1/8, 2/8, ..., 1, then 1
    weights = [warmup(Progress(step=s, steps_per_epoch=4)) for s in range(1, 13)]
    assert weights == [k / 8 for k in range(1, 9)] + [1.0] * 4
    assert LinearWarmup(epochs=0)(Progress(step=1, steps_per_epoch=4)) == 1.0


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_kl_warmup_must_be_a_number_of_epochs(data, bad):
    model, guide = make_pair("diagonal_normal")
    with pytest.raises(ValueError, match="kl_warmup is a number of epochs >= 0"):
        fit(model, guide, data, epochs=1, kl_warmup=bad, progress=False)


def test_an_epoch_of_one_step_is_warned_about_and_a_smaller_batch_suggested(data):
    model, guide = make_pair("diagonal_normal")
    with pytest.warns(SingleStepEpochs, match=r"240 training points at batch size 256.*e\.g\. 24"):
        fit(model, guide, data, epochs=1, batch_size=256, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleStepEpochs)
        fit(model, guide, data, epochs=1, batch_size=239, progress=False)  # two steps: silent


def test_eval_every_skips_heldout_metrics_but_never_the_last_epoch(data):
    model, guide = make_pair("diagonal_normal")
    history = fit(model, guide, data, epochs=5, batch_size=64, eval_every=2, progress=False)
    assert ["heldout_elbo" in h for h in history] == [False, True, False, True, True]
    assert all("train_loss" in h and "seconds" in h for h in history)


def test_max_seconds_stops_after_the_epoch_that_spends_it(data, tmp_path):
    model, guide = make_pair("diagonal_normal")
    history = fit(model, guide, data, epochs=50, batch_size=64, max_seconds=1e-9,
                  out_dir=tmp_path, progress=False)
    assert len(history) == 1 and "heldout_elbo" in history[0]  # the last epoch is evaluated
    history = fit(model, guide, data, epochs=50, batch_size=64, max_seconds=1e-9,
                  out_dir=tmp_path, resume=True, progress=False)
    assert len(history) == 1  # a resumed run past its budget trains nothing more


def test_a_run_that_diverges_in_epoch_one_keeps_its_initial_state_and_resumes(tmp_path, data):
    torch.manual_seed(0)
    model, guide = make_pair("diagonal_normal")
    calls = {"n": 0}

    def poison(module, inputs, output):  # the 2nd decoder call of epoch 1 returns NaN
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 2 else output

    handle = model.decoder.register_forward_hook(poison)
    with pytest.raises(TrainingDiverged, match=r"Loss became nan at epoch 1, step 2\. The last "
                       r"good checkpoint is kept \(.*checkpoint\.pt, the initial state\)"):
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            fit(model, guide, data, epochs=2, batch_size=32, lr=1.0, out_dir=tmp_path,
                progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 0
    handle.remove()
    model, guide = make_pair("diagonal_normal")
    history = fit(model, guide, data, epochs=2, batch_size=32, lr=1e-3, out_dir=tmp_path,
                  resume=True, progress=False)  # a smaller learning rate, honoured
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert [h["epoch"] for h in history] == [1, 2] and ckpt["epoch"] == 2
    assert {group["lr"] for group in ckpt["optimizer"]["param_groups"]} == {1e-3}


def test_no_out_dir_says_nothing_was_saved(data):
    model, guide = make_pair("diagonal_normal")
    model.decoder.register_forward_hook(lambda m, i, out: out * float("nan"))
    with pytest.raises(TrainingDiverged, match="Nothing was saved"):
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            fit(model, guide, data, epochs=1, progress=False)


def test_non_finite_parameters_stop_the_run_and_name_the_parameter(tmp_path, data):
    """A parameter the loss does not see can still go bad (here by hand; in practice through
    an overflowing update): the epoch-end check names it and keeps the last checkpoint."""
    from torch import nn

    model, guide = make_pair("diagonal_normal")
    model.spare = nn.Parameter(torch.zeros(3))
    calls = {"n": 0}

    def corrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 12:  # during epoch 2 (8 batches of 32 per epoch)
            module.spare.data.fill_(float("inf"))

    model.register_forward_pre_hook(corrupt)
    with pytest.raises(TrainingDiverged, match=r"parameter model\.spare is not finite after "
                       r"epoch 2\. The last good checkpoint is kept \(.*, epoch 1\)"):
        fit(model, guide, data, epochs=3, batch_size=32, out_dir=tmp_path, progress=False)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


def test_ctrl_c_says_which_epoch_the_checkpoint_holds(tmp_path, data):
    from zoo.train import TrainingInterrupted

    model, guide = make_pair("diagonal_normal")
    calls = {"n": 0}

    def interrupt(module, inputs):
        calls["n"] += 1
        if calls["n"] == 11:  # the 3rd step of epoch 2
            raise KeyboardInterrupt

    model.register_forward_pre_hook(interrupt)
    with pytest.raises(TrainingInterrupted) as stopped:
        fit(model, guide, data, epochs=3, batch_size=32, out_dir=tmp_path, progress=False)
    assert isinstance(stopped.value, KeyboardInterrupt)
    assert stopped.value.epoch == 1 and stopped.value.checkpoint == tmp_path / CHECKPOINT
    assert "stopped during epoch 2; the checkpoint holds epoch 1" in str(stopped.value)
    assert load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


def test_one_line_per_epoch_when_stderr_is_not_a_terminal(data, capsys):
    model, guide = make_pair("diagonal_normal")
    fit(model, guide, data, epochs=2, batch_size=64, progress=None)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and lines[1].startswith("epoch   2/2  train loss")
    assert "held-out ELBO" in lines[1]


def test_reading_the_loss_back_every_few_steps_finds_the_first_bad_step(tmp_path, data,
                                                                         monkeypatch):
    """The GPU path (the loss read every SYNC_EVERY steps), run on the CPU: same history as
    reading every step, and a NaN is reported at the step where it happened."""
    import zoo.train

    def run(sync_every, out_dir, poison_at=None):
        monkeypatch.setitem(zoo.train.SYNC_EVERY, "cpu", sync_every)
        torch.manual_seed(0)
        model, guide = make_pair("diagonal_normal")
        if poison_at is not None:
            calls = {"n": 0}

            def poison(module, inputs, output):
                calls["n"] += 1
                return output * float("nan") if calls["n"] == poison_at else output

            model.decoder.register_forward_hook(poison)
        return fit(model, guide, data, epochs=2, batch_size=32, seed=1, out_dir=out_dir,
                   progress=False)

    clocks = ("seconds", "cpu_seconds", "points_per_second")
    every, fourth = run(1, tmp_path / "a"), run(4, tmp_path / "b")
    assert [{k: v for k, v in h.items() if k not in clocks} for h in every] == \
        [{k: v for k, v in h.items() if k not in clocks} for h in fourth]
    with pytest.raises(TrainingDiverged, match=r"Loss became nan at epoch 2, step 2\."):
        with pyro.validation_enabled(False), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Encountered NaN", UserWarning)
            run(4, tmp_path / "c", poison_at=11)  # 8 steps and 1 evaluation, then step 2
    assert load_checkpoint(tmp_path / "c" / CHECKPOINT)["epoch"] == 1


@pytest.mark.parametrize("option,value,message", [
    ("epochs", 0, "epochs must be an integer >= 1, got 0"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("num_particles", 0, "num_particles must be an integer >= 1"),
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("clip_norm", -1.0, "clip_norm must be a finite number > 0 or None"),
    ("betas", (0.9, 1.5), r"betas must be two numbers in \[0, 1\)"),
    ("seed", -3, "seed must be an integer >= 0"),
    ("eval_every", 0, "eval_every must be an integer >= 1"),
    ("max_seconds", 0, "max_seconds must be a finite number > 0 or None"),
    ("device", "gpu", "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    ("epochs", 2.5, "epochs must be an integer >= 1, got 2.5"),
])
def test_training_options_are_checked_before_any_work(data, option, value, message):
    model, guide = make_pair("diagonal_normal")
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        fit(model, guide, data, progress=False, **{option: value})
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_unknown_training_options_are_named(data):
    model, guide = make_pair("diagonal_normal")
    with pytest.raises(ValueError, match="unknown training option.*learning_rate"):
        fit(model, guide, data, learning_rate=1e-3, progress=False)


def test_the_engine_moves_the_data_to_the_model_not_the_model_to_the_data(data):
    """A float64 model trained on float32 data: the batches are converted, the model stays."""
    torch.manual_seed(0)
    model, guide = make_pair("diagonal_normal")
    model.double()
    guide.double()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    history = fit(model, guide, data, epochs=1, batch_size=64, progress=False)
    assert set(seen) == {torch.float64} and all(p.dtype == torch.float64
                                                for p in model.parameters())
    assert history[0]["train_loss"] == history[0]["train_loss"]  # finite, not NaN


def test_non_finite_buffers_are_caught_and_named(tmp_path, data):
    """BatchNorm's running statistics can overflow while every parameter stays finite."""
    from torch import nn

    model, guide = make_pair("diagonal_normal")
    model.register_buffer("running", torch.zeros(2))

    def overflow(module, args):  # a pre-hook that returns nothing leaves the inputs alone
        module.running.fill_(float("nan"))

    model.register_forward_pre_hook(overflow)
    with pytest.raises(TrainingDiverged, match=r"buffer model\.running is not finite after "
                       r"epoch 1\. The last good checkpoint is kept \(.*, the initial state\)"):
        fit(model, guide, data, epochs=2, batch_size=64, out_dir=tmp_path, progress=False)
    assert isinstance(model.decoder, nn.Module)


def test_an_infinite_gradient_norm_is_caught_at_its_step_when_clipping(data):
    model, guide = make_pair("diagonal_normal")
    calls = {"n": 0}

    def blow_up(module, grad_input, grad_output):
        calls["n"] += 1
        if calls["n"] == 3:
            return tuple(g * float("inf") if g is not None else None for g in grad_input)

    model.decoder[0].register_full_backward_hook(blow_up)
    with pytest.raises(TrainingDiverged, match=r"the gradient norm became (inf|nan) at epoch 1, "
                       r"step 3\. Nothing was saved"):
        fit(model, guide, data, epochs=1, batch_size=32, clip_norm=10.0, progress=False)


def test_a_check_that_gives_a_reason_stops_the_run_before_its_checkpoint(tmp_path, data):
    model, guide = make_pair("diagonal_normal")
    seen = []

    def check(record):
        seen.append(record["epoch"])
        return "the monitor said stop" if record["epoch"] == 2 else None

    with pytest.raises(TrainingDiverged, match=r"the monitor said stop\. The last good "
                       r"checkpoint is kept \(.*, epoch 1\)"):
        fit(model, guide, data, epochs=3, batch_size=64, out_dir=tmp_path, progress=False,
            check=check)
    assert seen == [1, 2] and load_checkpoint(tmp_path / CHECKPOINT)["epoch"] == 1


def test_ctrl_c_during_the_evaluation_is_an_interrupted_run_too(tmp_path, data):
    from zoo.train import TrainingInterrupted

    model, guide = make_pair("diagonal_normal")

    def interrupt(model, guide, data):
        raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="stopped during epoch 1; the checkpoint holds "
                       "epoch 0"):
        fit(model, guide, data, epochs=2, batch_size=64, out_dir=tmp_path, progress=False,
            extra_metrics=interrupt)
