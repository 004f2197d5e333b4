"""The house's layers (README, "Layout"): imports point down only, and the CLI and the guides ask
models and guides their declared contract instead of probing them.

    poutine  <-  models, guides  <-  infer  <-  train, runs  <-  cli

checked on the source with ``ast`` (module-level and function-level imports alike)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package or module (as a path) -> the modules it must not import (a name and its submodules)
FORBIDDEN = {
    "zoo/poutine": ("zoo", "guides"),  # torch and pyro alone (and its siblings, below)
    "zoo/models": ("zoo.infer", "zoo.train", "zoo.runs", "zoo.cli", "guides"),
    "guides": ("zoo.infer", "zoo.train", "zoo.runs", "zoo.cli"),
    "zoo/infer": ("zoo.train", "zoo.runs", "zoo.cli"),
    "zoo/data": ("zoo.infer", "zoo.train", "zoo.runs", "zoo.cli", "zoo.models", "guides"),
    "zoo/registry.py": ("zoo", "guides"),  # the families register themselves
    "zoo/schedules.py": ("zoo", "guides"),
    # the engine's helpers and the comparison sit below the command line
    "zoo/options.py": ("zoo.train", "zoo.runs", "zoo.cli"),
    "zoo/divergence.py": ("zoo.train", "zoo.runs", "zoo.cli"),
    "zoo/run_config.py": ("zoo.cli",),
    **{f"zoo/{name}.py": ("zoo.cli",) for name in (
        "compare", "compare_eval", "compare_folders", "compare_plots", "compare_report",
        "compare_stats", "compare_train")},
}
ALLOWED = {
    "zoo/poutine": ("zoo.poutine",),
    # on the first lookup, the two packages whose __init__ lists the families
    "zoo/registry.py": ("guides", "zoo.models"),
}


def matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def sources(prefix: str) -> list[Path]:
    path = ROOT / prefix
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_imports_point_down_only(prefix):
    bad = []
    for path in sources(prefix):
        for name in imports(path):
            if matches(name, FORBIDDEN[prefix]) and not matches(name, ALLOWED.get(prefix, ())):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("prefix", [
    "zoo/cli.py", "zoo/cli_topics.py", "zoo/cli_nvi.py", "zoo/cli_data.py", "zoo/cli_train.py",
    "zoo/cli_compare.py", "zoo/run_config.py", "zoo/divergence.py", "zoo/compare.py",
    "zoo/compare_train.py", "zoo/compare_eval.py", "zoo/train.py", "zoo/runs.py", "guides"])
def test_no_probing_of_models_or_guides(prefix):
    """What a model or guide can do is declared on ZooModel / ZooGuide: no hasattr or getattr
    with a default in the CLI, the engine, the run folder or the guides."""
    bad = []
    for path in sources(prefix):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                probe = node.func.id == "hasattr" or (node.func.id == "getattr"
                                                      and len(node.args) == 3)
                if probe:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "probes at " + ", ".join(bad)
