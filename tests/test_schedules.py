"""Schedules (zoo/schedules.py) and how the engine applies them: CTM's prior warm-up switches
model and guide together at the step its old in-program clock did, a resumed run continues
every schedule exactly, and Python callers can anneal by training seconds."""

import pyro
import pytest
import torch

from zoo.data import Dataset, TensorSplit
from zoo.registry import get_guide, get_model
from zoo.schedules import LinearWarmup, Progress, Switch
from zoo.train import fit


def test_schedules_refuse_bad_lengths():
    with pytest.raises(ValueError, match="exactly one of epochs= and seconds="):
        LinearWarmup()
    with pytest.raises(ValueError, match="exactly one of epochs= and seconds="):
        LinearWarmup(epochs=1, seconds=1)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="number >= 0"):
            LinearWarmup(epochs=bad)
        with pytest.raises(ValueError, match="number of epochs >= 0"):
            Switch(bad)


def counts(num_docs=20, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(3 * torch.ones(num_docs, vocab), generator=g)
    return Dataset("counts", TensorSplit(x), TensorSplit(x[:5]), "text")


def ctm_run(out_dir=None, epochs=2, resume=False, prior_warmup=1.5):
    """CTM + ctf on 20 documents in batches of 10; returns the prior_learning flags that model
    and guide had at every training forward, and the pair."""
    pyro.set_rng_seed(0)
    model = get_model("ctm", input_dim=12, num_topics=3, prior_warmup=prior_warmup)
    guide = get_guide("ctf", model, hidden_dims=(8,), num_flows=2)
    seen = []

    def record(module, args):
        if module.training:
            seen.append((bool(model.prior_learning), bool(guide.prior_learning)))

    model.register_forward_pre_hook(record)
    fit(model, guide, counts(), epochs=epochs, batch_size=10, seed=0, out_dir=out_dir,
        resume=resume, progress=False, device="cpu")
    return seen, model, guide


def test_the_prior_warmup_switches_model_and_guide_after_its_epochs():
    seen, model, guide = ctm_run()
    # batches of 10 after 0, 10, 20, 30 documents of 20: the warm-up ends after 1.5 epochs
    assert seen == [(False, False)] * 3 + [(True, True)]
    assert bool(model.prior_learning) and bool(guide.prior_learning)


def test_a_resumed_run_continues_the_schedule(tmp_path):
    whole, model, guide = ctm_run(tmp_path / "whole", epochs=2)
    first, _, _ = ctm_run(tmp_path / "split", epochs=1)
    second, resumed_model, resumed_guide = ctm_run(tmp_path / "split", epochs=2, resume=True)
    assert first + second == whole
    for a, b in zip([*model.state_dict().values(), *guide.state_dict().values()],
                    [*resumed_model.state_dict().values(), *resumed_guide.state_dict().values()]):
        assert torch.equal(a, b)


def test_python_callers_anneal_by_seconds_and_steps():
    """Any callable of Progress is a schedule; the engine records its last value per epoch."""
    calls = []

    def schedule(progress):
        calls.append(progress)
        return LinearWarmup(seconds=3600)(progress)

    pyro.set_rng_seed(0)
    model = get_model("vae", input_dim=12, latent_dim=2, hidden_dims=(8,))
    guide = get_guide("diagonal_normal", model, hidden_dims=(8,))
    data = Dataset("toy", TensorSplit(torch.rand(40, 12).round()), TensorSplit(torch.rand(8, 12)
                                                                              .round()), "image")
    history = fit(model, guide, data, epochs=2, batch_size=16, progress=False, device="cpu",
                  schedules={"kl_weight": schedule})
    assert [p.step for p in calls] == [1, 2, 3, 4, 5, 6]  # 3 batches of 40 per epoch
    assert [p.epoch for p in calls] == [0, 0.4, 0.8, 1.0, 1.4, 1.8]
    assert all(a.seconds <= b.seconds for a, b in zip(calls, calls[1:]))
    assert 0 <= history[-1]["kl_weight"] < 0.01  # one hour of warm-up: barely begun


def test_switch_and_warmup_values():
    assert Switch(1.5)(Progress(step=3, steps_per_epoch=2, epoch=1.0)) == 0.0
    assert Switch(1.5)(Progress(step=4, steps_per_epoch=2, epoch=1.5)) == 1.0
    assert LinearWarmup(seconds=0)(Progress(step=1, steps_per_epoch=1)) == 1.0
