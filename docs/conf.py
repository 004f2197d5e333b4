"""Sphinx configuration of the zoo's site: ``make docs`` builds it, ``make docs-check`` checks it.

The build is offline: MathJax is served from the pinned ``sphinx-mathjax-offline`` package, no
intersphinx inventory is fetched, the notebooks are rendered from their stored outputs (never
executed). Warnings are errors (``-W --keep-going``, nitpicky); see ``nitpick_ignore_regex``
for the external types that are rendered as plain text instead.
"""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import zoo  # noqa: E402

project = "pyro-vi-zoo"
author = "the pyro-vi-zoo authors"
copyright = "the pyro-vi-zoo authors, Apache-2.0"
release = version = zoo.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (MyST) and the notebooks, from their stored outputs
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax: nothing from a CDN
    "zoo_site",  # README sections, notebooks, the layers figure, the docstring rules
    "zoo_catalogue",  # the model and guide tables and one page per model, from the registry
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "README.md"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# --- warnings are errors: every reference must resolve ------------------------------------
nitpicky = True
# Types from other projects: without intersphinx (the build is offline) they cannot link, so
# they render as plain text. Only these roots are let through; a reference to anything else
# that does not resolve (a typo, a renamed zoo name) fails the build.
_EXTERNAL = (
    "torch", "pyro", "numpy", "np", "scipy", "sklearn", "matplotlib", "arviz", "tqdm", "nbformat",
    "argparse", "pathlib", "collections", "typing", "inspect", "json", "os", "io", "contextlib",
    "dataclasses", "enum", "abc", "types", "functools", "itertools", "random", "math",
    "numbers", "datetime", "logging", "concurrent", "multiprocessing", "tempfile", "zipfile",
    "gzip", "re", "shutil", "subprocess", "sys", "time", "warnings", "weakref", "docutils",
    "sphinx",
)
nitpick_ignore_regex = [
    (r"py:.*", rf"(?s)({'|'.join(_EXTERNAL)})(\..*)?"),
    # private names that public signatures mention (``_Turn``): private, so not documented
    (r"py:.*", r"(?s)(.*\.)?_[A-Za-z].*"),
    # bare names of external types as annotations and docstrings write them
    (r"py:.*", r"(Tensor|Module|Parameter|Distribution|TorchDistribution|Transform|Figure|Axes"
               r"|ndarray|Path|Callable|Iterable|Iterator|Sequence|Mapping|Any|Optional"
               r"|Generator|ArgumentParser|Namespace|Messenger|PyroModule|ELBO|Trace|plate"
               r"|Trace_ELBO|TraceMeanField_ELBO|TraceGraph_ELBO|nn\..*|dist\..*|csr_matrix"
               r"|spmatrix|Self|Literal|ClassVar|optional|array-like|array_like|callable)"),
]

# --- autodoc: the API reference and the model pages ---------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {
    "members": True,
    "undoc-members": True,  # so that zoo_site sees, and fails on, a public name without docs
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_inherit_docstrings = True
autoclass_content = "class"
add_module_names = False
python_use_unqualified_type_names = True

# --- notebooks: rendered from what is stored in them --------------------------------------
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # widget state is stripped when stored; never load widget JS from a CDN
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- math: MathJax 3 from _static; an undefined macro is an error MathJax reports ---------
mathjax3_config = {
    "tex": {"packages": {"[-]": ["noundefined"]}},
}

# --- HTML ---------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"pyro-vi-zoo {release}"
html_static_path = ["_static"]
html_css_files = ["zoo.css"]
html_last_updated_fmt = None
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
