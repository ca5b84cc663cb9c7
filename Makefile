# possm-jax: the README's commands. `make demo` and `make test` work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo transfer test test-slow bench bench-quick calibrate lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=10

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m experiments.demo --workdir=runs/demo

transfer: $(STAMP)
	$(PY) -m experiments.transfer_study --config=experiments/configs/transfer_study.py:small --workdir=runs/transfer

bench: $(STAMP)
	$(PY) -m experiments.bench --out=runs/bench

bench-quick: $(STAMP)
	$(PY) -m experiments.bench --out=runs/bench --quick

calibrate: $(STAMP)
	$(PY) -m experiments.calibrate --preset=demo
	$(PY) -m experiments.calibrate --preset=handwriting --gru_steps=1500
	$(PY) -m experiments.calibrate --preset=speech --gru_steps=1000

clean:
	rm -rf runs .pytest_cache .ruff_cache
