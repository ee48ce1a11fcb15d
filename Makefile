# The two commands of the README: `make demo` runs the main job, `make test` runs the test suite.
# Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,serve]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/leadscore demo

test: $(VENV)/.installed
	$(BIN)/pytest -q -n auto --maxprocesses 4

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/score.py

clean:  # everything `make demo` writes lives in ./demo/
	rm -rf demo
