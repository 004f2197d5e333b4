"""Every notebook under ``tutorials/`` runs top to bottom in smoke mode (``ZOO_SMOKE=1``, which
each notebook reads to shrink its data and epochs), executed with nbclient; any error fails.

The kernel is this interpreter (a kernelspec written to a temporary ``JUPYTER_PATH``), so the
notebooks import the same installed ``zoo`` as the tests, whatever kernels the machine has.
"""

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "zoo-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "zoo tests", "language": "python",
    }))
    monkeypatch_module.setenv("JUPYTER_PATH", str(root))
    monkeypatch_module.setenv("ZOO_SMOKE", "1")
    monkeypatch_module.setenv("MPLBACKEND", "Agg")
    monkeypatch_module.setenv("OMP_NUM_THREADS", "1")
    return "zoo-tests"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_tutorials_exist_and_are_numbered():
    assert NOTEBOOKS, "no notebooks under tutorials/"
    for path in NOTEBOOKS:
        assert path.name[:3].rstrip("_").isdigit(), f"{path.name}: name it NN_topic.ipynb"
        source = "".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        assert "ZOO_SMOKE" in source, f"{path.name} has no smoke mode (read ZOO_SMOKE)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs_top_to_bottom(path, kernel_name):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    assert os.environ.get("ZOO_SMOKE") == "1"
