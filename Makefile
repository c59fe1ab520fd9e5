# Two entry points (README): `make run` and `make test`. Both create the virtual env on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU machines this project is developed on get these two from a local mirror; override for a CUDA build.
TORCH_PKGS ?= torch==2.14.1 torchvision==0.29.1
# Real offline data for tests and reproductions (override with PRUNELAB_DATA_DIR=...).
SHARED_DATA := $(abspath ../shared/data)
PYTEST_ARGS ?=
# exact versions (pip constraints) for `make setup`; `make setup LOCK=` installs without them
LOCK ?= requirements.lock
# pytest-xdist workers for `make test` (one thread each, tests/conftest.py); PYTEST_WORKERS=0 runs in one process
PYTEST_WORKERS ?= 2

.PHONY: setup run test lint bench clean lock

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(LOCK),-c $(LOCK)) $(TORCH_PKGS)
	$(BIN)/python -m pip install -q $(if $(LOCK),-c $(LOCK)) -e '.[dev]'
	touch $@

lock: setup
	{ sed -n '1,2p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^prunelab'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

run: setup
	$(BIN)/prunelab $(ARGS)

test: setup
	@export PRUNELAB_DATA_DIR="$${PRUNELAB_DATA_DIR:-$(SHARED_DATA)}"; \
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5), treated as success"; rc=0; fi; \
	exit $$rc

lint: setup
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/python tools/check_structure.py

bench: setup
	@export PRUNELAB_DATA_DIR="$${PRUNELAB_DATA_DIR:-$(SHARED_DATA)}"; $(BIN)/python -m benchmarks

clean:
	rm -rf outputs multirun .pytest_cache
