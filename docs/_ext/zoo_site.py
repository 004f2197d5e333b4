"""The site's plumbing, as a Sphinx extension.

- ``{readme-section} TITLE``: the README's section ``## TITLE`` (no argument: the text between the
  title and the first section), its headings raised one level to fit under the page's title.
  The README stays the one home of that text; the page re-reads it whenever it changes.
- The tutorials: ``tutorials/NN_*.ipynb`` copied into ``docs/tutorials/`` when they change (the
  site renders their stored outputs; nothing is executed).
- The figure of the layers (``docs/_generated/layers.png``), drawn from the imports that the
  source makes at build time.
- ``{benchmark-outputs}``: the figures and the folder READMEs under ``benchmarks/results/``.
- Docstring rules: a public module, class, function, method or property of ``zoo`` or
  ``guides`` without a docstring of its own (or one inherited from a zoo class) is a warning,
  hence an error under ``-W``.
- A Python reference written as a unique dotted suffix (``ZooModel.data_plate`` for
  ``zoo.models.base.ZooModel.data_plate``) resolves to that object; an ambiguous or unknown one
  still fails.
"""

from __future__ import annotations

import ast
import dataclasses
import filecmp
import hashlib
import importlib
import inspect
import os
import re
import shutil
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
README = ROOT / "README.md"
GENERATED = DOCS / "_generated"
OWN_PACKAGES = ("zoo", "guides")


# --- README sections ---------------------------------------------------------------------

def readme_sections(text: str) -> dict[str, tuple[int, str]]:
    """``{title: (first line, body)}`` for every ``## title`` of the README (``""``: the text
    before the first one, without the ``# title`` line). Fenced code is not searched."""
    sections: dict[str, tuple[int, list[str]]] = {"": (0, [])}
    current, fence = "", None
    for i, line in enumerate(text.splitlines()):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            mark = stripped[:3]
            fence = None if fence == mark else (fence or mark)
        if fence is None and line.startswith("## "):
            current = line[3:].strip()
            sections[current] = (i + 1, [])
            continue
        if fence is None and line.startswith("# ") and current == "" and not sections[""][1]:
            sections[""] = (i + 1, [])
            continue
        sections[current][1].append(line)
    return {title: (start, "\n".join(body)) for title, (start, body) in sections.items()}


_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+)(\))")


def _rebase_images(body: str, page_dir: Path) -> str:
    """The README's images are written relative to the repository root; the page that shows
    them lives under docs/, so each relative image path is rewritten relative to that page
    (Sphinx then copies the file into ``_images/``)."""
    def rebase(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"[a-z]+:", target) or target.startswith("/"):
            return match.group(0)
        return match.group(1) + os.path.relpath(ROOT / target, page_dir) + match.group(3)
    return _IMAGE.sub(rebase, body)


class ReadmeSection(SphinxDirective):
    """Render a section of the README here, in place, headings one level up."""

    optional_arguments = 1
    final_argument_whitespace = True

    def run(self):
        self.env.note_dependency(str(README))
        title = self.arguments[0].strip() if self.arguments else ""
        sections = readme_sections(README.read_text(encoding="utf-8"))
        if title not in sections:
            raise self.error(f"README.md has no section '## {title}' (it has: "
                             f"{', '.join(repr(t) for t in sections if t)})")
        start, body = sections[title]
        body = _rebase_images(body, Path(self.env.doc2path(self.env.docname)).parent)
        renderer = getattr(self.state, "_renderer", None)
        if renderer is None:
            raise self.error("readme-section works in MyST (.md) pages only")
        source = renderer.document["source"]
        try:  # messages from the included text point at README.md, as MyST's include does
            renderer.document["source"] = str(README)
            renderer.reporter.source = str(README)
            renderer.nested_render_text(body, start, heading_offset=-1)
        finally:
            renderer.document["source"] = source
            renderer.reporter.source = source
        return []


# --- the tutorials -----------------------------------------------------------------------

def sync_notebooks(app) -> None:
    """Copy the numbered notebooks (of ``tutorials/``, or of ``$ZOO_DOCS_TUTORIALS``: a test
    builds the site from notebooks it executed elsewhere) into docs/tutorials/, touching only
    those that changed (so a rebuild re-reads only them), and remove copies whose source is
    gone."""
    target = DOCS / "tutorials"
    target.mkdir(exist_ok=True)
    folder = Path(os.environ.get("ZOO_DOCS_TUTORIALS", ROOT / "tutorials"))
    sources = {p.name: p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}
    for name, path in sources.items():
        copy = target / name
        if not copy.exists() or not filecmp.cmp(path, copy, shallow=False):
            shutil.copyfile(path, copy)
    for copy in target.glob("*.ipynb"):
        if copy.name not in sources:
            copy.unlink()


# --- the layers figure -------------------------------------------------------------------

#: the boxes of the figure, as the README's "Layout" names them: a module belongs to the box
#: with the longest prefix it has (``zoo.cli`` holds ``zoo.cli_topics`` too)
GROUPS = {
    "zoo.poutine": ("custom effect handlers", ("zoo.poutine",)),
    "zoo.registry": ("registries, options, schedules", ("zoo.registry", "zoo.options",
                                                       "zoo.schedules")),
    "zoo.data": ("loaders, formats, validation", ("zoo.data",)),
    "zoo.models": ("generative programs", ("zoo.models",)),
    "guides": ("guide families", ("guides",)),
    "zoo.infer": ("objectives, estimators", ("zoo.infer",)),
    "zoo.evaluation": ("metrics, topics, plots", ("zoo.evaluation", "zoo.metrics", "zoo.topics",
                                                  "zoo.plots")),
    "zoo.train": ("the training loop", ("zoo.train", "zoo.divergence")),
    "zoo.runs": ("the run folder", ("zoo.runs", "zoo.run_config")),
    "zoo.cli": ("the command line", ("zoo.cli", "zoo.compare", "zoo.demo")),
}
#: imports left out of the figure: the registry imports the two packages that list the
#: families on its first lookup, so that they register themselves (tests/test_layers.py
#: allows it too)
ON_FIRST_USE = {("zoo.registry", "zoo.models"), ("zoo.registry", "guides")}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group_of(module: str) -> str | None:
    best, length = None, 0
    for group, (_, prefixes) in GROUPS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith((prefix + ".", prefix + "_"))) \
                    and len(prefix) > length:
                best, length = group, len(prefix)
    return best


def import_graph() -> dict[str, set[str]]:
    """Box -> the boxes its modules import (module-level and function-level imports)."""
    edges: dict[str, set[str]] = {g: set() for g in GROUPS}
    for package in OWN_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            source = group_of(module_name(path))
            if source is None:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                for name in names:
                    target = group_of(name)
                    if target not in (None, source) and (source, target) not in ON_FIRST_USE:
                        edges[source].add(target)
    return edges


def layers_figure(app) -> None:
    """Draw docs/_generated/layers.png: one row per layer (a box sits above every box it
    imports, and as close above as it can), an arrow from each box to each box it imports
    directly that no longer path already implies; an arrow that points up (a cycle) is red."""
    edges = import_graph()
    key = hashlib.sha256(repr(sorted((k, sorted(v)) for k, v in edges.items())).encode()
                         + Path(__file__).read_bytes()).hexdigest()[:16]
    out = GENERATED / "layers.png"
    stamp = GENERATED / "layers.key"
    if out.exists() and stamp.exists() and stamp.read_text() == key:
        return
    GENERATED.mkdir(exist_ok=True)

    level: dict[str, int] = {}

    def depth(group: str, seen: tuple = ()) -> int:
        if group in level:
            return level[group]
        below = [depth(t, seen + (group,)) for t in edges[group] if t not in seen + (group,)]
        level[group] = 1 + max(below, default=-1)
        return level[group]

    for group in GROUPS:
        depth(group)
    # then as high as its importers allow (short arrows): one row below the lowest importer
    for group in sorted(GROUPS, key=lambda g: -level[g]):
        importers = [level[a] for a in GROUPS if group in edges[a] and level[a] > level[group]]
        if importers:
            level[group] = min(importers) - 1

    def reaches(a: str, b: str, skip_direct: bool) -> bool:
        stack = [t for t in edges[a] if not (skip_direct and t == b)]
        seen = set()
        while stack:
            n = stack.pop()
            if n == b:
                return True
            if n not in seen:
                seen.add(n)
                stack.extend(edges[n])
        return False

    drawn = [(a, b) for a in GROUPS for b in sorted(edges[a]) if not reaches(a, b, True)]

    from matplotlib.figure import Figure  # no pyplot: the backend is never switched
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    rows: dict[int, list[str]] = {}
    for group in GROUPS:
        rows.setdefault(level[group], []).append(group)
    width = max(len(r) for r in rows.values())
    fig = Figure(figsize=(2.3 * width + 0.6, 1.25 * len(rows) + 0.5), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.6, len(rows) - 0.35)
    ax.axis("off")
    pos = {}
    for lvl in sorted(rows, reverse=True):  # top down, each row ordered under its importers
        groups = rows[lvl]
        groups.sort(key=lambda g: sum(pos[a][0] for a in pos if g in edges[a])
                    / max(1, sum(1 for a in pos if g in edges[a])))
        offset = (width - len(groups)) / 2
        for i, group in enumerate(groups):
            pos[group] = (offset + i, lvl)
    for a, b in drawn:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        up = yb >= ya
        ax.add_patch(FancyArrowPatch((xa, ya - 0.2), (xb, yb + 0.2), arrowstyle="-|>",
                                     mutation_scale=12, lw=1.2, shrinkA=2, shrinkB=2,
                                     color="#c0392b" if up else "#7f8c8d", zorder=1))
    for group, (x, y) in pos.items():
        package = group.split(".")[0]
        color = "#dbe9f6" if package == "zoo" else "#e3f4e1"
        ax.add_patch(FancyBboxPatch((x - 0.42, y - 0.2), 0.84, 0.4,
                                    boxstyle="round,pad=0.02,rounding_size=0.06",
                                    fc=color, ec="#34495e", lw=1, zorder=2))
        ax.text(x, y + 0.06, group, ha="center", va="center", fontsize=9.5,
                family="monospace", weight="bold", zorder=3)
        ax.text(x, y - 0.09, GROUPS[group][0], ha="center", va="center", fontsize=8, zorder=3)
    fig.savefig(out)
    stamp.write_text(key)


# --- benchmark outputs -------------------------------------------------------------------

class BenchmarkOutputs(SphinxDirective):
    """The figures under benchmarks/results/ (each captioned with its path) and the READMEs
    of its folders, which give the commands of the runs they hold."""

    def run(self):
        results = ROOT / "benchmarks" / "results"
        for path in sorted(results.rglob("*")):
            self.env.note_dependency(str(path))
        lines = []
        figures = sorted(p for p in results.rglob("*")
                         if p.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg"))
        readmes = sorted(results.rglob("README.md"))
        for path in readmes:
            rel = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            body = "\n".join(line for line in text.splitlines() if not line.startswith("# "))
            title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), rel)
            lines += [f"### {title}", "", f"`{rel}`", "", body, ""]
        for path in figures:
            rel = path.relative_to(ROOT).as_posix()
            src = Path("..").joinpath(*([".."] * (len(Path(self.env.docname).parts) - 1)), rel)
            lines += [f"```{{figure}} {src.as_posix()}", f":alt: {rel}", "", f"`{rel}`", "```", ""]
        if not figures:
            lines += ["No figures are stored under `benchmarks/results/` at present: every "
                      "result there is a table (`results.md`) with its raw rows "
                      "(`results.json`).", ""]
        files = sorted(p.relative_to(ROOT).as_posix() for p in results.rglob("*") if p.is_file())
        lines += ["### Every stored output", ""] + [f"- `{f}`" for f in files] + [""]
        container = nodes.container()
        self.state.nested_parse(self.content.__class__(lines, "benchmark-outputs"),
                                self.content_offset, container)
        return container.children


# --- docstring rules ---------------------------------------------------------------------

def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _inherited_from(name: str) -> type | None:
    """For a method without a docstring of its own: the base class whose docstring it would
    inherit."""
    module_path, _, attr = name.rpartition(".")
    mod_name, _, cls_name = module_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError, ValueError):
        return None
    for base in inspect.getmro(cls)[1:]:
        member = base.__dict__.get(attr)
        if member is not None and getattr(member, "__doc__", None):
            return base
    return None


#: overrides whose meaning is their own class's, whatever the base says: they need a docstring
OWN_MEANING = ("forward",)


_warned: set[str] = set()


def check_docstring(app, what, name, obj, options, lines):
    """Warn on a public name of zoo or guides without a docstring. A method that overrides
    torch's or Pyro's (``Distribution.log_prob``, ``ELBO.loss``) says which contract it
    implements instead of repeating theirs; ``forward`` needs its own words."""
    if what in ("attribute", "data") or not name.startswith(OWN_PACKAGES):
        return
    if not _is_public(name) or name in _warned:
        return
    # autodoc also asks for the docstrings of members it then skips (names a module imports):
    # only an object defined where it is documented counts
    parent = name.rpartition(".")[0]
    home = {"module": name, "class": parent, "exception": parent, "function": parent}.get(
        what, parent.rpartition(".")[0])
    if getattr(getattr(obj, "fget", obj), "__module__", home) != home:
        return
    own = inspect.getdoc(obj) if what == "module" else getattr(obj, "__doc__", None)
    if what in ("method", "property", "function") and not own:
        func = getattr(obj, "fget", obj)
        own = func.__dict__.get("__doc__") if hasattr(func, "__dict__") else None
        own = own or getattr(func, "__doc__", None)
        base = _inherited_from(name) if not own and what == "method" else None
        if base is not None and not base.__module__.startswith(OWN_PACKAGES):
            # an override of torch's or Pyro's method: documented by that contract, which is
            # named here rather than rendered (their markup is theirs); forward() is not
            lines.clear()
            attr = name.rpartition(".")[2]
            if attr not in OWN_MEANING:
                lines.append(f"Implements ``{base.__module__}.{base.__qualname__}.{attr}`` "
                             "(see there).")
    if not any(line.strip() for line in lines):
        where = None
        try:
            code = getattr(obj, "fget", obj)
            where = f"{inspect.getsourcefile(code)}:{inspect.getsourcelines(code)[1]}"
        except (TypeError, OSError):
            pass
        _warned.add(name)
        logger.warning("public %s %s has no docstring", what, name, type="zoo",
                       subtype="docstring", location=where)


# --- references by a unique suffix -------------------------------------------------------

ROLE_TYPES = {
    "class": {"class", "exception"}, "exc": {"class", "exception"},
    "func": {"function", "method", "classmethod", "staticmethod"},
    "meth": {"method", "classmethod", "staticmethod", "function", "property"},
    "attr": {"attribute", "property", "data"}, "data": {"data", "attribute"},
    "mod": {"module"}, "obj": None,
}


def _canonical(target: str) -> str | None:
    """Where an object named through a re-export (``zoo.data.load``) is documented."""
    module, _, attr = target.rpartition(".")
    while module:
        try:
            obj = importlib.import_module(module)
        except ImportError:
            module, _, head = module.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        home = getattr(obj, "__module__", None)
        qual = getattr(obj, "__qualname__", None)
        return f"{home}.{qual}" if home and qual else None
    return None


def resolve_by_suffix(app, env, node, contnode):
    """Resolve, in this order: a target broken over two docstring lines (the whitespace
    removed), a zoo object named where it is re-exported (``zoo.data.load``), and a unique
    dotted suffix of a documented name (preferring the current module when several fit)."""
    if node.get("refdomain") != "py":
        return None
    target = "".join(node.get("reftarget", "").split())
    if not target:
        return None
    domain = env.get_domain("py")
    kinds = ROLE_TYPES.get(node.get("reftype"))

    def fits(entry):
        return not entry.aliased and (kinds is None or entry.objtype in kinds)

    if target != node["reftarget"] and target in domain.objects and fits(domain.objects[target]):
        found = [(target, domain.objects[target])]
    elif target.startswith(OWN_PACKAGES):
        canonical = _canonical(target)
        entry = domain.objects.get(canonical) if canonical else None
        found = [(canonical, entry)] if entry is not None and fits(entry) else []
    else:
        found = [(full, entry) for full, entry in domain.objects.items()
                 if full.endswith("." + target) and fits(entry)]
        if len(found) > 1 and node.get("py:module"):
            here = [(f, e) for f, e in found if f.startswith(node["py:module"] + ".")]
            found = here or found
    if len(found) != 1:
        if target != node["reftarget"]:
            node["reftarget"] = target  # so that nitpick_ignore sees the joined name
        return None
    full, entry = found[0]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, full)


def dataclass_signature(app, what, name, obj, options, signature, return_annotation):
    """A dataclass field with a ``default_factory`` shows as ``= <factory>``, which is not
    Python and makes Sphinx split the signature at every comma: show ``= dict()`` instead."""
    if signature and "<factory>" in signature and dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.default_factory is not dataclasses.MISSING:
                factory = getattr(f.default_factory, "__name__", "factory")
                signature = re.sub(rf"(\b{f.name}\b[^=,]*= )<factory>", rf"\g<1>{factory}()",
                                   signature)
        return signature, return_annotation
    return None


def setup(app):
    app.add_directive("readme-section", ReadmeSection)
    app.add_directive("benchmark-outputs", BenchmarkOutputs)
    app.connect("builder-inited", sync_notebooks)
    app.connect("builder-inited", layers_figure)
    app.connect("autodoc-process-docstring", check_docstring)
    app.connect("missing-reference", resolve_by_suffix)
    app.connect("autodoc-process-signature", dataclass_signature)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
