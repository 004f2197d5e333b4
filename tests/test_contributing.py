"""The contributor guide (README, "Adding a model or guide") works as written, and every family
that a file of ``zoo/models/`` or ``guides/`` defines is in the registry.

The two code blocks of the guide are executed as they are; the model they add then passes the
registry-wide pair check with every guide that fits it, trains and evaluates through the CLI, and
the guide passes the pair check on every registered model it fits. The entries are removed from
the registry afterwards, so no other test sees them."""

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest

import guides
import zoo.models
from guides.base import AmortizedGuide, ZooGuide
from guides.simplex import SimplexGuide
from tests.test_registry import check_pair
from zoo import cli
from zoo.models.base import ZooModel
from zoo.registry import GUIDES, MODELS, list_guides, list_models

README = Path(__file__).resolve().parents[1] / "README.md"
#: classes that families derive from, and are not families themselves
BASES = {ZooModel, ZooGuide, AmortizedGuide, SimplexGuide}


def guide_blocks() -> list[str]:
    """The guide's Python blocks, each padded with blank lines so that a traceback points at
    the README's own line numbers."""
    text = README.read_text()
    start = text.index("## Adding a model or guide")
    end = text.index("\n## ", start + 1)
    blocks = re.finditer(r"```python\n(.*?)```", text[start:end], flags=re.S)
    return ["\n" * text.count("\n", 0, start + m.start(1)) + m.group(1) for m in blocks]


@pytest.fixture
def contributed():
    """Run the guide's two blocks; yield their namespaces; unregister what they registered."""
    model_block, guide_block = guide_blocks()
    namespaces = []
    try:
        for block in (model_block, guide_block):
            namespace = {}
            exec(compile(block, str(README), "exec"), namespace)
            namespaces.append(namespace)
        yield namespaces
    finally:
        MODELS._entries.pop("poisson_pca", None)
        GUIDES._entries.pop("student_t", None)


def test_the_guide_has_a_model_and_a_guide_block():
    blocks = guide_blocks()
    assert len(blocks) == 2
    assert "@register_model" in blocks[0] and "@register_guide" in blocks[1]


def test_the_worked_model_passes_the_registry_checks(contributed, tmp_path):
    assert "poisson_pca" in list_models()
    fitting = list_guides("poisson_pca")
    assert {"diagonal_normal", "householder", "student_t"} <= set(fitting)
    for guide_name in fitting:
        check_pair("poisson_pca", guide_name)
    out = tmp_path / "run"
    cli.main(["train", "poisson_pca", "--data", "reuters", "--model-opt", "latent_dim=2",
              "--epochs", "1", "--out", str(out), "--quiet"])
    cli.main(["evaluate", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["heldout_elbo"] < 0


def test_the_worked_guide_fits_every_model_with_local_real_latents(contributed):
    fits = [m for m in list_models() if "student_t" in list_guides(m)]
    assert {"vae", "dlgm", "prodlda", "poisson_pca"} <= set(fits)
    assert "lda" not in fits and "gbtm" not in fits
    for model_name in fits:
        check_pair(model_name, "student_t")


def _families(package) -> list[tuple[str, type]]:
    """``(file, class)`` of every model or guide class defined in the package's modules."""
    found = []
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (obj.__module__ == module.__name__ and issubclass(obj, (ZooModel, ZooGuide))
                    and obj not in BASES):
                found.append((module.__file__, obj))
    return found


def test_every_family_defined_in_the_packages_is_registered():
    registered = {*(cls for _, cls in MODELS.items()), *(cls for _, cls in GUIDES.items())}
    missing = [f"{Path(file).relative_to(README.parent)} defines {cls.__name__}"
               for package in (zoo.models, guides) for file, cls in _families(package)
               if cls not in registered]
    assert not missing, ("; ".join(missing) + ": decorate it with @register_model or "
                         "@register_guide and import its file in the package's __init__.py")
