# Quick start: `make run` (set up, fetch ML-100K, train, export, build index and
# clusters, serve the UI at http://127.0.0.1:8000)
# and `make test` (set up, run the test suite).
PY := .venv/bin/python
BUNDLE ?= artifacts/current
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup run train build test bench clean

setup:
	bash scripts/setup.sh

train: setup
	$(PY) -m embedder train

build: train
	$(PY) -m search build --bundle $(BUNDLE)

# A second `make run` serves the bundle that is there (`make build` retrains).
run: setup
	@test -e $(BUNDLE)/manifest.json || $(MAKE) --no-print-directory build
	@test -e $(BUNDLE)/cluster_labels.npy || $(PY) -m search build --bundle $(BUNDLE)
	$(PY) -m web --bundle $(BUNDLE) --host $(HOST) --port $(PORT)

test: setup
	$(PY) -m pytest -q

bench: setup
	EXTRAS=train,dev,bench bash scripts/setup.sh
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/quality.py
	$(PY) benchmarks/ranking.py
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/ann.py
	$(PY) benchmarks/web_load.py

clean:
	rm -rf .venv .pytest_cache
