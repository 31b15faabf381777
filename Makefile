# The two set-up commands: `make run` and `make test`. Both build .venv on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Keep compiled kernels and trained zoo models out of the repo and out of the user's way.
export TORCHINDUCTOR_CACHE_DIR ?= $(CURDIR)/.cache/inductor
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test test-heavy lint install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin the local CPU wheel first so nothing below can pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[hf,dev,ray]" "torch==2.13.0"
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/torchslim optimize

# One worker per core (at most 4), a test file per worker so module fixtures (MiniLM) load once:
# much of a test is single-threaded Python (tracing, export, calibration).
test: install
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile -m "not gpu and not heavy"

# Minutes-long MiniLM checks kept out of `make test` (CI's 2 cores): run them before a release.
test-heavy: install
	$(PY) -m pytest -q -m "heavy and not gpu"

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .cache .pytest_cache
