"""The catalogue of models and guides, written from the registry when the build starts.

Generated (reStructuredText, so that the docstrings' roles and maths render as they are written):

- ``docs/catalogue/models.rst``: every registered model, what it is, its default guide and the
  guides that fit it;
- ``docs/catalogue/guides.rst``: every guide family, what it is, its options and which model
  each fits (a model x guide table);
- ``docs/catalogue/models/NAME.rst``: one page per model: its options (type, default, the
  docstring's words), its latent sites, its defaults for guides and training, the guides that
  fit with the options each takes from the model, and its module docstring (the generative
  story and its maths) through autodoc.

Everything comes from :mod:`zoo.registry` (``list_models``, ``find_model``, ``list_guides``,
``list_all_guides``, ``find_guide``, ``accepted_options``, ``default_guide_options``); a file is
rewritten only when its text changes, so an unchanged registry leaves the build incremental.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
CATALOGUE = DOCS / "catalogue"

_PARAM = re.compile(r"^\s*:param\s+(?:(?P<type>[^:]+?)\s+)?(?P<name>\w+):\s*(?P<text>.*)$")


def param_docs(cls) -> dict[str, tuple[str, str]]:
    """``{option: (type, description)}`` from the ``:param:`` fields of the class docstrings
    (and ``__init__`` docstrings) along the MRO, the nearest class winning."""
    found: dict[str, tuple[str, str]] = {}
    for klass in inspect.getmro(cls):
        for doc in (klass.__dict__.get("__doc__"), getattr(klass.__dict__.get("__init__"),
                                                           "__doc__", None)):
            if not doc:
                continue
            lines = inspect.cleandoc(doc).splitlines()
            i = 0
            while i < len(lines):
                m = _PARAM.match(lines[i])
                i += 1
                if not m:
                    continue
                text = [m["text"].strip()]
                while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
                    text.append(lines[i].strip())
                    i += 1
                found.setdefault(m["name"], ((m["type"] or "").strip(), " ".join(text)))
    return found


def first_sentence(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def summary_of(cls) -> str:
    module = inspect.getmodule(cls)
    return first_sentence(module.__doc__) or first_sentence(cls.__doc__)


def literal(value) -> str:
    text = repr(value)
    return f"``{text}``" if text else ""


def type_name(annotation, default, documented: str) -> str:
    if annotation is not inspect.Parameter.empty:
        return annotation if isinstance(annotation, str) else getattr(annotation, "__name__",
                                                                       str(annotation))
    if documented:
        return documented
    if default is None or default is inspect.Parameter.empty:
        return ""
    return type(default).__name__


def options_rows(cls) -> list[list[str]]:
    from zoo.registry import accepted_options

    docs = param_docs(cls)
    rows = []
    for name, p in accepted_options(cls).items():
        documented, text = docs.get(name, ("", ""))
        kind = type_name(p.annotation, p.default, documented)
        default = "(required)" if p.default is inspect.Parameter.empty else literal(p.default)
        rows.append([f"``{name}``", f"``{kind}``" if kind else "", default, text])
    return rows


def options_inline(cls) -> str:
    from zoo.registry import accepted_options

    docs = param_docs(cls)
    parts = []
    for name, p in accepted_options(cls).items():
        kind = type_name(p.annotation, p.default, docs.get(name, ("", ""))[0])
        default = "" if p.default is inspect.Parameter.empty else f" = {p.default!r}"
        parts.append(f"``{name}{': ' + kind if kind else ''}{default}``")
    return ", ".join(parts)


def list_table(header: list[str], rows: list[list[str]], widths: str = "auto",
               stub: int = 0) -> list[str]:
    lines = [".. list-table::", f"   :widths: {widths}"]
    if header:
        lines.append("   :header-rows: 1")
    if stub:
        lines.append(f"   :stub-columns: {stub}")
    lines.append("")
    for row in ([header] if header else []) + rows:
        for j, cell in enumerate(row):
            cell_lines = (cell or "\\ ").splitlines() or ["\\ "]
            lead = "   * - " if j == 0 else "     - "
            lines.append(lead + cell_lines[0])
            lines += ["       " + c for c in cell_lines[1:]]
    return lines + [""]


def title(text: str, char: str = "=") -> list[str]:
    return [text, char * len(text), ""]


def qualname(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def model_page(name: str) -> str:
    from zoo.registry import default_guide_options, find_guide, find_model, get_model, list_guides

    cls = find_model(name)
    model = get_model(name)
    fitting = list_guides(model)
    lines = [f".. _model-{name}:", ""]
    lines += title(f"``{name}``: {cls.__name__}")
    lines += [summary_of(cls), ""]
    sites = []
    for site in model.latent_sites():
        where = "local" if site.local else "global" + (f", plate ``{site.plate}``"
                                                      if site.plate else "")
        sites.append(f"``{site.name}``: {site.support}, event shape ``{tuple(site.event_shape)}``"
                     f", {where}")
    facts = [
        ["class", f":class:`~{qualname(cls)}` (API: :mod:`{cls.__module__}`)"],
        ["build it", f"| ``zoo.registry.get_model({name!r}, **options)``\n"
                     f"| ``zoo train {name} --model-opt KEY=VALUE``"],
        ["latent sites (default options)", "\n".join(f"| {s}" for s in sites) or "none"],
        ["default guide", f"``{cls.default_guide}``"],
        ["guides that fit", ", ".join(f"``{g}``" for g in fitting)],
        ["default guide options", ", ".join(f"``{k}={v!r}``" for k, v in
                                            cls.default_guide_options.items()) or "none"],
        ["default training settings", ", ".join(f"``{k}={v!r}``" for k, v in
                                                cls.default_train_config.items()) or
         "the engine's defaults"],
        ["topic model", "yes: perplexity, NPMI, diversity and topic figures"
         if cls.topic_model else "no"],
    ]
    lines += list_table([], facts, widths="25 75", stub=1)
    lines += title("The generative story", "-")
    lines += [f"From the docstring of :mod:`{cls.__module__}`:", "",
              f".. automodule:: {cls.__module__}", "   :no-index:", "   :no-members:", ""]
    lines += title("Options", "-")
    lines += [f".. py:currentmodule:: {cls.__module__}", ""]
    lines += ["Keyword options of the model (``get_model(name, **options)``, "
              "``--model-opt``), with their defaults:", ""]
    lines += list_table(["option", "type", "default", "what it is"], options_rows(cls),
                        widths="18 14 14 54")
    lines += title("Guides that fit", "-")
    rows = []
    for g in fitting:
        gcls = find_guide(g)
        taken = default_guide_options(model, g)
        rows.append([f"``{g}``" + (" (default)" if g == cls.default_guide else ""),
                     f":class:`~{qualname(gcls)}`",
                     ", ".join(f"``{k}={v!r}``" for k, v in taken.items()) or "none"])
    lines += ["Each guide family that fits this model's latent sites, and the options it takes "
              "from the model's ``default_guide_options``:", ""]
    lines += list_table(["guide", "class", "options from the model's defaults"], rows,
                        widths="22 33 45")
    return "\n".join(lines)


def models_page() -> str:
    from zoo.registry import find_model, list_guides, list_models

    lines = [".. _catalogue-models:", ""] + title("Models")
    lines += ["Every model in the registry (``zoo.registry.list_models()``), generated when the "
              "site is built. A guide fits a model when the model's latent sites fit the guide "
              "family; the last column asks every family (``zoo.registry.list_guides``).", ""]
    rows = []
    for name in list_models():
        cls = find_model(name)
        rows.append([f":doc:`{name} <models/{name}>`", summary_of(cls),
                     f"``{cls.default_guide}``",
                     ", ".join(f"``{g}``" for g in list_guides(name))])
    lines += list_table(["model", "what it is", "default guide", "guides that fit"], rows,
                        widths="12 48 15 25")
    lines += [".. toctree::", "   :hidden:", ""]
    lines += [f"   models/{name}" for name in list_models()] + [""]
    return "\n".join(lines)


def guides_page() -> str:
    from zoo.registry import find_guide, get_model, list_all_guides, list_models

    models = {name: get_model(name) for name in list_models()}
    lines = [".. _catalogue-guides:", ""] + title("Guides")
    lines += ["Every guide family in the registry (``zoo.registry.list_all_guides()``), "
              "generated when the site is built. A family is generic over what it "
              "approximates: ``why_not(model)`` decides from the model's latent sites whether "
              "it fits.", ""]
    rows = []
    for g in list_all_guides():
        cls = find_guide(g)
        fits = [m for m, model in models.items() if cls.why_not(model) is None]
        rows.append([f"``{g}``", f":class:`~{qualname(cls)}`", summary_of(cls),
                     ", ".join(f":doc:`{m} <models/{m}>`" for m in fits) or "none registered"])
    lines += list_table(["guide", "class", "what it is", "fits"], rows, widths="14 20 46 20")
    lines += title("Which guide fits which model", "-")
    lines += ["A guide family (row) against every model (column): **default** where it is the "
              "model's default guide, ``yes`` where it fits.", ""]
    header = ["guide"] + [f":doc:`{m} <models/{m}>`" for m in models]
    matrix = []
    for g in list_all_guides():
        cls = find_guide(g)
        cells = [("**default**" if model.default_guide == g else "``yes``")
                 if cls.why_not(model) is None else "" for model in models.values()]
        matrix.append([f"``{g}``"] + cells)
    lines += list_table(header, matrix)
    names = list_all_guides()
    lines += title("Options of each guide", "-")
    lines += ["``Guide(model, **options)`` (``zoo.registry.get_guide(name, model, **options)``, "
              "``--guide-opt``); a family passes unknown options on to the class it extends.",
              ""]
    for g in names:
        cls = find_guide(g)
        lines += title(f"``{g}``", "~")
        lines += [f".. py:currentmodule:: {cls.__module__}", ""]
        lines += list_table(["option", "type", "default", "what it is"], options_rows(cls),
                            widths="18 14 14 54")
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(app) -> None:
    from zoo.registry import list_models

    write_if_changed(CATALOGUE / "models.rst", models_page())
    write_if_changed(CATALOGUE / "guides.rst", guides_page())
    names = list_models()
    for name in names:
        write_if_changed(CATALOGUE / "models" / f"{name}.rst", model_page(name))
    for stale in (CATALOGUE / "models").glob("*.rst"):
        if stale.stem not in names:
            stale.unlink()


def setup(app):
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
