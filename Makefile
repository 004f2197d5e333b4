# Every target bootstraps .venv on a fresh machine: torch==2.13.0 first (the CPU build this
# machine keeps on disk; any other torch pulls a multi-GB CUDA build), then the project.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# One torch thread per process: the 2 shared cores made 2-thread runs 10-50x slower whenever
# another process held a core (see README, "Benchmarks").
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: test demo tutorials bench lint clean

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

tutorials: $(STAMP)
	$(PYTHON) -m pytest -q tests/test_tutorials.py

# The two benchmarks that take minutes; the README gives the command of every other one
# (topic_models, correlated_topics, deep_models, nested_vi take 10-40 minutes each).
bench: $(STAMP)
	$(PYTHON) benchmarks/train_throughput.py
	$(PYTHON) benchmarks/importance.py

lint: $(STAMP)
	$(VENV)/bin/ruff check zoo guides tests benchmarks conftest.py

clean:
	rm -rf $(VENV) runs .pytest_cache
