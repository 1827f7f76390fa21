# pokecard: `make run` (install + pipeline on params/quick.yaml) and `make test` (install + nbdev-test + pytest).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PARAMS ?= params/quick.yaml

.PHONY: install run lab bench readme test nbtest pytest check-sync

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/pokecard run $(PARAMS)

# JupyterLab on the notebooks, on loopback only: open the http://127.0.0.1:$(LAB_PORT)/lab?token=... address it prints; Ctrl-C stops it.
LAB_PORT ?= 8888
lab: install
	$(BIN)/jupyter-lab --no-browser --ip 127.0.0.1 --port $(LAB_PORT) --ServerApp.root_dir=nbs --KernelManager.transport_encryption=auto \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# After `make run`: pokecard against the alternatives on the quick run (and on the real cards in ../shared/data when
# there), tables written to outputs/quick/bench/ and into README.md between its bench markers.
bench: install
	$(BIN)/pokecard bench $(PARAMS) --max-queries 100 --readme README.md

# Library notebooks (00c_images, 00f_forge, ...) run in parallel; stage notebooks (01_data ... 09_bench) share the
# outputs/ci run folder and build on each other, so they run in order, one at a time.
nbtest: install
	$(BIN)/nbdev-test --n-workers 2 --skip-file-re '^[_.]|^[0-9][0-9]_'
	$(BIN)/nbdev-test --n-workers 1 --file-re '^[0-9][0-9]_'

pytest: install
	$(BIN)/pytest

test: nbtest pytest

# README.md is generated from nbs/index.ipynb (its markdown cells): edit the notebook, then `make readme`.
readme: install
	$(BIN)/python scripts/readme.py

# CI: the notebooks and the generated modules must agree (nbdev-export and nbdev-clean change nothing), and README.md its notebook.
check-sync: install
	@before=$$(git status --porcelain -- nbs pokecard | md5sum; git diff -- nbs pokecard | md5sum); \
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean; \
	after=$$(git status --porcelain -- nbs pokecard | md5sum; git diff -- nbs pokecard | md5sum); \
	if [ "$$before" != "$$after" ]; then echo "nbdev-export/nbdev-clean changed files: run them and commit"; git status --short -- nbs pokecard; exit 1; fi; \
	echo "notebooks and modules in sync"; \
	$(BIN)/python scripts/readme.py --check
