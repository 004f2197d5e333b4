"""NVDM (zoo/models/nvdm.py): the log-linear softmax(Rh + b) decoder on a Gaussian latent, with
the generic Gaussian encoder guide; training lowers held-out perplexity."""

import pyro
import pytest
import torch
from pyro import poutine

from zoo import topics
from zoo.data import Dataset, TensorSplit
from zoo.registry import get_guide, get_model, list_guides
from zoo.train import fit


def test_generative_story(seed):
    model = get_model("nvdm", input_dim=20, latent_dim=3)
    x = model(None, batch_size=4, doc_length=30)
    assert x.shape == (4, 20) and torch.all(x.sum(-1) == 30)
    trace = poutine.trace(model).get_trace(x, num_data=40)
    z = trace.nodes["z"]["value"]  # [4, 3]
    fn = trace.nodes["x"]["fn"]
    expected = torch.softmax(z @ model.decoder.weight.T + model.decoder.bias, -1)
    assert torch.allclose(fn.probs, expected, atol=1e-6)
    assert trace.nodes["z"]["scale"] == pytest.approx(10.0)
    assert "diagonal_normal" in list_guides(model) and "dirichlet" not in list_guides(model)
    words = topics.topic_word(model)
    assert words.shape == (3, 20) and torch.allclose(words.sum(-1), torch.ones(3))


def test_training_lowers_heldout_perplexity(seed):
    pyro.set_rng_seed(0)
    teacher = get_model("nvdm", input_dim=40, latent_dim=2)
    with torch.no_grad():
        teacher.decoder.weight.mul_(3.0)
        x = teacher(None, batch_size=500, doc_length=50)
    data = Dataset("toy", TensorSplit(x[:400]), TensorSplit(x[400:]), "text")
    model = get_model("nvdm", input_dim=40, latent_dim=2)
    guide = get_guide("diagonal_normal", model, **model.default_guide_options)
    model.eval()
    guide.eval()
    before = topics.heldout_perplexity(model, guide, data.test)
    history = fit(model, guide, data, epochs=15, lr=1e-2, batch_size=50, progress=False)
    after = topics.heldout_perplexity(model, guide, data.test)
    unigram = torch.distributions.Categorical(probs=x[:400].sum(0) / x[:400].sum())
    unigram_ppl = unigram.entropy().exp().item()  # a bag-of-words model with no latent
    assert history[-1]["heldout_elbo"] > history[0]["heldout_elbo"]
    assert after < before and after < unigram_ppl < 40
