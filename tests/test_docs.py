"""The documentation site's fast checks (seconds; the full build and the browser check are
``make docs-check``, called by ``.ci/run``): the README sections the pages include exist, the
catalogue writes a page with a generative story for every registered model, and docs/check.py
fails, naming them, on a missing model page and on a tutorial without figures."""

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def test_readme_sections_that_pages_include_exist():
    pytest.importorskip("sphinx")
    site = _load("zoo_site", DOCS / "_ext" / "zoo_site.py")
    sections = site.readme_sections((ROOT / "README.md").read_text(encoding="utf-8"))
    wanted = []
    for page in DOCS.rglob("*.md"):
        if "_build" in page.parts:
            continue
        for title in re.findall(r"^```\{readme-section\}[ \t]*(.*)$", page.read_text(), re.M):
            wanted.append((page.relative_to(DOCS).as_posix(), title.strip()))
    assert wanted
    missing = [f"{page}: '## {title}'" for page, title in wanted if title not in sections]
    assert not missing, f"README sections the site includes are gone: {missing}"


def test_readme_images_are_rebased_onto_the_page():
    pytest.importorskip("sphinx")
    site = _load("zoo_site", DOCS / "_ext" / "zoo_site.py")
    body = "![a](benchmarks/results/x.png) ![b](https://example.org/y.png)"
    assert site._rebase_images(body, DOCS) == (
        "![a](../benchmarks/results/x.png) ![b](https://example.org/y.png)")


def test_catalogue_writes_every_model_page():
    from zoo.registry import list_models

    catalogue = _load("zoo_catalogue", DOCS / "_ext" / "zoo_catalogue.py")
    models = list_models()
    assert models
    index = catalogue.models_page()
    for name in models:
        page = catalogue.model_page(name)
        assert "The generative story" in page and ".. automodule::" in page, name
        assert f"models/{name}" in index, f"{name} is not in the models table of contents"


def _fake_site(tmp_path: Path, models: list[str]) -> Path:
    site = tmp_path / "html"
    for page in ("index.html", "getting-started.html", "catalogue/models.html",
                 "catalogue/guides.html", "tutorials/index.html", "benchmarks.html",
                 "api/index.html", "contributing.html", "design.html"):
        (site / page).parent.mkdir(parents=True, exist_ok=True)
        (site / page).write_text("<html></html>")
    (site / "catalogue" / "models").mkdir(parents=True, exist_ok=True)
    for name in models:
        (site / "catalogue" / "models" / f"{name}.html").write_text(
            '<section id="the-generative-story"><div class="math">x</div></section>')
    return site


def test_check_fails_on_a_missing_model_page_and_a_tutorial_without_figures(tmp_path):
    from zoo.registry import list_models

    check = _load("zoo_docs_check", DOCS / "check.py")
    models = list_models()
    site = _fake_site(tmp_path, models[1:])
    tutorials = tmp_path / "tutorials"
    tutorials.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("plot()", metadata={"tags": ["figure"]})]
    nbformat.write(nb, tutorials / "01_first.ipynb")
    (site / "tutorials" / "01_first.html").write_text("<html></html>")
    failures, checked = check.check_files(site, tutorials)
    messages = "\n".join(m for _, m in failures)
    assert f"model {models[0]!r}: no page" in messages
    assert "01_first.ipynb cell 0: tagged 'figure' but produced no image" in messages
    assert "01_first.ipynb: no figure" in messages
    assert {what for what, _ in failures} == {f"model {models[0]}", "tutorial 01_first"}
