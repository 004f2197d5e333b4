"""The tutorials (``tutorials/*.ipynb``) run, draw their figures, and keep honest outputs.

Every notebook is executed top to bottom in smoke mode (``ZOO_SMOKE=1``, which each notebook
reads to shrink its data and epochs) with matplotlib's inline backend, as in Jupyter, by
``tutorials/execute.py``; any error fails, and so does a cell tagged ``figure`` that draws no
image. The stored notebooks must hold the outputs of a full run of their current source: each
code cell records the hash of the source that produced its outputs (``make tutorials`` runs and
stores them)."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("execute", ROOT / "tutorials" / "execute.py")
execute = importlib.util.module_from_spec(spec)
spec.loader.exec_module(execute)
NOTEBOOKS = execute.notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def test_tutorials_exist_and_are_numbered():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) >= 7
    for path in NOTEBOOKS:
        source = "".join(cell.source for cell in nbformat.read(path, as_version=4).cells)
        assert "ZOO_SMOKE" in source, f"{path.name} has no smoke mode (read ZOO_SMOKE)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_notebook_says_what_it_teaches_assumes_and_takes(path):
    header = nbformat.read(path, as_version=4).cells[0]
    assert header.cell_type == "markdown"
    text = " ".join(header.source.split())  # as rendered: line breaks are spaces
    for words in ("What it teaches", "Assumes", "one CPU thread"):
        assert words in text, f"{path.name}: the first cell should say '{words}'"
    minutes = re.search(r"about (\w+) minutes? on one CPU thread", text)
    assert minutes and minutes.group(1) in {"one", "two", "three", "four", "five"}, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_tutorial_runs_top_to_bottom_and_draws_its_figures(path):
    nb = execute.execute(path, smoke=True, timeout=600)  # raises on the first failing cell
    assert execute.problems(nb, path.name, stored=False) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_come_from_the_current_source_in_full_mode(path):
    assert execute.problems(nbformat.read(path, as_version=4), path.name) == []


def test_nothing_in_the_package_switches_the_matplotlib_backend():
    """``matplotlib.use`` in the package would replace a notebook's inline backend, and every
    figure would vanish from the notebook."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("zoo", "guides")
                 for p in (ROOT / folder).rglob("*.py") if "matplotlib.use(" in p.read_text()]
    assert offenders == []
