# One entry point for people and CI. Every target sets itself up: a fresh
# machine with Python 3.11, gcc and make is enough.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EXTS   := .build-stamp

.PHONY: run test bench lint build clean

$(STAMP): pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt setuptools cython
	$(BIN)/python -m pip install -q -c constraints.txt --no-build-isolation -e '.[dev]'
	# instructor (a test client) caps jiter below the 0.16 the openai pin needs and runs on
	# the newer one: installed without its requirements; what it imports (tenacity, aiohttp,
	# jinja2, docstring-parser) comes with '.[dev]', its CLI's rich and typer are not needed
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps 'instructor>=1.17,<2'
	touch $@

$(EXTS): $(STAMP) setup.py $(wildcard hotpath/*.pyx hotpath/*.pxd hotpath/*.h)
	$(BIN)/python setup.py -q build_ext --inplace
	touch $@

build: $(EXTS)

run: build
	$(BIN)/llm-edge serve


test: build
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: build
	$(BIN)/python bench/simulator.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/hotpath.py
	$(BIN)/python bench/hedging.py
	$(BIN)/python bench/attacks.py
	$(BIN)/python bench/pressure.py
	$(BIN)/python bench/slo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf build $(EXTS) hotpath/*.c hotpath/*.so
