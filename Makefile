# Quick start: `make run` (set up, fetch ML-100K, train, export, index, serve)
# and `make test` (set up, run the test suite).
PY := .venv/bin/python
BUNDLE ?= artifacts/current
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run train test bench clean

setup:
	bash scripts/setup.sh

train: setup
	$(PY) -m embedder train

run: train
	@echo "trained; bundle at $(BUNDLE)"

test: setup
	$(PY) -m pytest -q

bench: setup
	EXTRAS=dev,bench bash scripts/setup.sh
	$(PY) benchmarks/train_speed.py

clean:
	rm -rf .venv .pytest_cache
