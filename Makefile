# Two commands do everything on a fresh machine with python3 and make:
#   make run   — set up .venv, then run the quick benchmark suite (offline, < 5 min on 2 cores)
#   make test  — set up .venv, then run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned and installed first: this platform has a CPU build of 2.13.0 on disk, and an
# unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed
# test processes (pytest-xdist), one torch thread each (tests/conftest.py); worksteal: an idle process takes
# tests queued for a busy one, so one long test does not hold the other process idle
TEST_WORKERS ?= 2

.PHONY: run test setup lint clean

$(STAMP): pyproject.toml setup.py src/neuroplastic/boltzmann/_native.c src/neuroplastic/sal/_native.c \
		src/neuroplastic/_team.h src/neuroplastic/_stream.h
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[dev,dist]"
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/neuroplastic bench quick

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) results .pytest_cache
