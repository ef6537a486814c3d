# citesearch: `make run` serves the seed corpus, `make test` runs the whole suite. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DATA_DIR ?= data
IMAGE  ?= citesearch:latest

.PHONY: setup run test lint bench soak bench-quality clean image image-test

# Idempotent: venv, torch (CPU build, first), pinned dependencies, then the offline model.
setup: $(VENV)/.deps-installed
	$(BIN)/citesearch model prepare

$(VENV)/.deps-installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24" "setuptools>=77"
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

run: setup
	$(BIN)/citesearch ingest seeds/ --data-dir $(DATA_DIR)
	$(BIN)/citesearch serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

test: setup
	@command -v chromium >/dev/null || echo "*** WARNING: no chromium: the browser tests (tests/test_page_browser.py) will be SKIPPED (apt-get install chromium chromium-driver) ***"
	$(BIN)/python -m pytest

lint: $(VENV)/.deps-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m bench.run_all

# Issue #10's soak (~17 min on 2 cores; run it on a quiet machine). SOAK_ARGS=--quick for a smoke run.
soak: setup
	$(BIN)/python -m pip install -q -c constraints.txt matplotlib
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# The container image (README, Docker): docker build where a Docker engine runs, else buildah.
# BASE_IMAGE, TORCH_INDEX_URL, PIP_INDEX_URL and PIP_CERT pass through (deploy/build-image.sh).
image:
	IMAGE=$(IMAGE) deploy/build-image.sh

# Build the image (on a local Debian base where no registry gives python:3.11-slim), serve the seeds
# from it and ask the H20 question, then start docker-compose.cluster.yml's services from it against
# a throwaway PostgreSQL (tests/image/check_image.py). Root, buildah, debootstrap, docker-compose.
image-test: $(VENV)/.deps-installed
	$(BIN)/python -m tests.image.check_image --image $(IMAGE)

clean:
	rm -rf $(VENV) models .mypy_cache .ruff_cache .pytest_cache
