"""Doctests (``pytest --doctest-modules`` over ``zoo`` and ``guides``, which ``make test`` runs):
each example runs seeded, with Pyro's checks on and module-local parameters, as the tests do,
with ``torch``, ``pyro``, ``dist`` and ``poutine`` in its namespace."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update(torch=torch, pyro=pyro, dist=dist, poutine=poutine)
    pyro.set_rng_seed(0)
    pyro.enable_validation(True)
    with pyro.settings.context(module_local_params=True):
        yield
