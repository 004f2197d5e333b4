"""Everything registered is tested (timm's pattern): every (model, guide) pair takes a finite
step, and the guide's sample sites are exactly the model's declared latent sites."""

import pyro
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample

from zoo.infer import get_objective
from zoo.registry import (
    default_guide_options,
    get_guide,
    get_model,
    list_all_guides,
    list_guides,
    list_models,
    register_model,
)

PAIRS = [(m, g) for m in list_models() for g in list_guides(m)]


def test_every_model_has_a_guide_and_its_default_fits():
    for name in list_models():
        model = get_model(name)
        assert model.default_guide in list_guides(model), name


@pytest.mark.parametrize("model_name,guide_name", PAIRS)
def test_pair_takes_a_finite_step_and_sites_match(model_name, guide_name):
    check_pair(model_name, guide_name)


def check_pair(model_name: str, guide_name: str):
    """The registry-wide check of one (model, guide) pair: the model's declared latent sites
    are its trace's, the guide samples exactly them with the declared event shapes, and one
    training step is finite with a finite gradient for every guide parameter."""
    pyro.set_rng_seed(0)
    model = get_model(model_name)
    guide = get_guide(guide_name, model, **default_guide_options(model, guide_name))
    x = model.example_batch(8)

    model_trace = poutine.trace(model).get_trace(x)
    guide_trace = poutine.trace(guide).get_trace(x)
    latent = {
        name for name, site in model_trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"]
        and not site["infer"].get("_do_not_trace") and not name.startswith("_")
        and not site_is_subsample(site)
    }
    declared = {site.name for site in model.latent_sites()}
    sampled = {name for name, site in guide_trace.nodes.items()  # as Pyro's own check does,
               if site["type"] == "sample" and not site_is_subsample(site)  # auxiliary sites
               and not site["infer"].get("is_auxiliary")}  # (guide-only factors) aside
    assert latent == declared, "model.latent_sites() disagrees with the model's trace"
    assert sampled == declared, "the guide's sample sites differ from the model's latent sites"
    for site in model.latent_sites():
        value = guide_trace.nodes[site.name]["value"]
        assert value.shape[value.dim() - len(site.event_shape):] == site.event_shape

    loss_fn = get_objective("trace", max_plate_nesting=model.max_plate_nesting)(model, guide)
    loss = loss_fn(x, num_data=100)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in guide.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_duplicate_registration_is_refused():
    with pytest.raises(ValueError, match="already registered under the name 'vae'"):
        register_model("vae")(type("Other", (), {}))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown model 'nope'. Registered models: .*vae"):
        get_model("nope")
    with pytest.raises(ValueError, match="Unknown guide 'nope'. Registered guides: .*householder"):
        get_guide("nope", get_model("vae"))


def test_guide_that_does_not_fit_names_those_that_do():
    unfitting = [g for g in list_all_guides() if g not in list_guides("vae")]
    if not unfitting:
        pytest.skip("every registered guide fits the VAE")
    with pytest.raises(ValueError, match="does not fit model 'vae'.*Guides that fit it: "
                                         ".*diagonal_normal"):
        get_guide(unfitting[0], get_model("vae"))
