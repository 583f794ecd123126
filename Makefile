# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# python3.12 from PATH, or from pyenv when its shim is not activated.
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: demo test lint options-table bench clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: install Python 3.12 or set PYTHON312=/path/to/python3.12" >&2; exit 2; }
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/geocam run data/sample/havel_crop.tif --model data/models/geocam-resnet50-eurosat-rgb.safetensors --out out/demo

test: $(VENV)/.installed
	$(PY) -m pytest -q

# README's option tables, generated from the config fields (tests/test_cli.py checks them).
options-table: $(VENV)/.installed
	$(PY) scripts/options_table.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check geocam tests benchmarks
	$(VENV)/bin/ruff format --check geocam tests benchmarks
	$(VENV)/bin/mypy geocam

clean:
	rm -rf out
