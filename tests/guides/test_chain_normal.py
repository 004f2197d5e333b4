"""The bottom-up chain guide: on one latent site it is the diagonal guide; on a DLGM each layer's
Gaussian is computed from the sample of the layer below, and it trains through the engine."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from guides.chain_normal import ChainNormalGuide
from guides.diagonal_normal import DiagonalNormalGuide
from zoo.registry import get_guide, get_model, list_guides


def _batch(n=5, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, d), 0.4), generator=g)


def _dlgm(latent_dims=(6, 3)):
    return get_model("dlgm", input_dim=16, latent_dims=latent_dims, hidden_dims=(12,),
                     transition_dims=(8,))


def test_one_site_is_the_diagonal_guide(seed):
    model = get_model("vae", input_dim=16, latent_dim=4, hidden_dims=(12,))
    chain = ChainNormalGuide(model, hidden_dims=(10,))
    diagonal = DiagonalNormalGuide(model, hidden_dims=(10,))
    diagonal.load_state_dict(chain.state_dict())  # the same parameters, nothing more
    x = _batch()
    trace = poutine.trace(chain).get_trace(x)
    value = trace.nodes["z"]["value"]
    expected = poutine.trace(poutine.condition(diagonal, data={"z": value})).get_trace(x)
    torch.testing.assert_close(trace.nodes["z"]["fn"].log_prob(value),
                               expected.nodes["z"]["fn"].log_prob(value))


@pytest.mark.parametrize("latent_dims", [(6, 3), (7, 5, 2)])
def test_each_layer_is_conditioned_on_the_one_below(seed, latent_dims):
    model = _dlgm(latent_dims)
    guide = get_guide("chain_normal", model, hidden_dims=(10,), link_dims=(9,))
    x = _batch()
    trace = poutine.trace(guide).get_trace(x)
    num_layers = len(latent_dims)
    # bottom-up: z_1 first, then z_2, ...
    assert [n for n in trace.stochastic_nodes if n != "data"] == [
        f"z_{l}" for l in range(1, num_layers + 1)]
    loc, scale = guide.heads["z_1"](guide.hidden(x))
    torch.testing.assert_close(trace.nodes["z_1"]["fn"].base_dist.loc, loc)
    for l in range(2, num_layers + 1):
        below = trace.nodes[f"z_{l - 1}"]["value"]
        loc, scale = guide.links[f"z_{l}"](below)
        value = trace.nodes[f"z_{l}"]["value"]
        expected = dist.Normal(loc, scale).to_event(1).log_prob(value)
        torch.testing.assert_close(trace.nodes[f"z_{l}"]["fn"].log_prob(value), expected)
        # and it is not a function of x alone: another z_{l-1} moves q(z_l)
        moved, _ = guide.links[f"z_{l}"](below + 1.0)
        assert (moved - loc).abs().max() > 1e-3
    assert set(guide.heads) == {"z_1"}


def test_trains_with_vectorized_particles(seed):
    model = _dlgm()
    assert "chain_normal" in list_guides(model)  # registered on import of guides.chain_normal
    guide = get_guide("chain_normal", model, hidden_dims=(10,))
    elbo = Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo(model, guide)(_batch(), num_data=50)
    loss.backward()
    for name, p in guide.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    pyro.set_rng_seed(1)
    assert torch.isfinite(torch.tensor(elbo.loss(model, guide, _batch())))
