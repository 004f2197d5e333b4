# Every target bootstraps .venv on a fresh machine: torch==2.13.0 first (the CPU build this
# machine keeps on disk; any other torch pulls a multi-GB CUDA build), then the project.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# One torch thread per process: the 2 shared cores made 2-thread runs 10-50x slower whenever
# another process held a core (see README, "Benchmarks").
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: test demo tutorials bench lint clean docs docs-check

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest -q -p no:cacheprovider

demo: $(STAMP)
	$(PYTHON) -m zoo.demo --out runs/demo

# Execute every notebook in full mode and store its outputs and figures (minutes each)
tutorials: $(STAMP)
	$(PYTHON) tutorials/execute.py

# The two benchmarks that take minutes; the README gives the command of every other one
# (topic_models, correlated_topics, deep_models, nested_vi take 10-40 minutes each).
bench: $(STAMP)
	$(PYTHON) benchmarks/train_throughput.py
	$(PYTHON) benchmarks/importance.py

# The documentation site (docs/): Sphinx, offline, warnings as errors. `make docs` builds
# incrementally into docs/_build/html; `make docs-check` rebuilds it from scratch (so that every
# warning is seen again and no page of an earlier build is left), then docs/check.py checks the pages and opens them in headless
# Chromium (Debian's, installed here when missing): tutorial figures, a page per model, console
# errors, failed requests, images, MathJax errors; screenshots in docs/_build/screenshots/.
DOCS_STAMP := $(VENV)/.docs-installed
SPHINX     := $(PYTHON) -m sphinx -b html -n -W --keep-going -q -d docs/_build/doctrees docs docs/_build/html

$(DOCS_STAMP): $(STAMP)
	$(PYTHON) -m pip install -q -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(SPHINX)
	@echo "docs: docs/_build/html/index.html"

docs-check: $(DOCS_STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }
	# the API stubs too: autosummary keeps the stub of a module that was moved or removed
	rm -rf docs/_build/html docs/_build/doctrees docs/_build/screenshots docs/api/generated
	$(SPHINX)
	$(PYTHON) docs/check.py

lint: $(STAMP)
	$(VENV)/bin/ruff check zoo guides tests benchmarks conftest.py

clean:
	rm -rf $(VENV) runs .pytest_cache docs/_build docs/api/generated
