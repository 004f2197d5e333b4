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
