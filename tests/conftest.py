import os

import pyro
import pytest
import torch

# One thread: the 2 shared cores of CI make multi-threaded torch erratic (see README).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _pyro_defaults():
    """Every test runs with validation on, a clean param store and module-local parameters."""
    pyro.enable_validation(True)
    pyro.clear_param_store()
    with pyro.settings.context(module_local_params=True):
        yield
    pyro.clear_param_store()


@pytest.fixture
def seed():
    pyro.set_rng_seed(0)
    return 0


@pytest.fixture
def make_ppca():
    """``make_ppca(input_dim, noise_scale, seed, batch_size) -> (model, x)``: a probabilistic
    PCA with known evidence and posterior, and a batch drawn from it (seeded)."""

    def make(input_dim=6, latent_dim=2, noise_scale=0.8, seed=3, batch_size=8):
        from zoo.models.ppca import PPCA

        pyro.set_rng_seed(0)
        model = PPCA(input_dim=input_dim, latent_dim=latent_dim, noise_scale=noise_scale,
                     seed=seed)
        return model, model(batch_size=batch_size).detach()  # x: [batch_size, input_dim]

    return make
