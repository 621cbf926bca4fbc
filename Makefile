# The README's commands. Each target sets up what it needs itself (a venv in .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean tools notebooks dashboard

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,terraform]'
	touch $(STAMP)

demo: $(STAMP)  ## the main job: deploy the load-balanced web app on the local cloud
	$(BIN)/slipstream deploy webapp

test: $(STAMP) tools  ## every test, with real Terraform and real processes
	$(BIN)/python -m pytest -n 3 --dist loadfile

# System tools the tests use, installed when missing where we are root with apt-get:
# bubblewrap isolates `local` instances (README: Isolation on the local cloud) and the tests
# check that it does; the ssh cloud's end-to-end test makes its hosts with iproute2 (network
# namespaces) and Debian's sshd; the dashboard's test opens the page in Debian's chromium
# (driven by Playwright, which downloads no browser of its own).
tools:
	@missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing:$$missing (apt-get install$$missing)" >&2; \
	  fi; \
	fi

# The notebooks' kernels start in notebooks/: point them at the home the CLI uses here.
notebooks: $(STAMP)  ## the tutorials in JupyterLab (deploy.ipynb, explore.ipynb)
	SLIPSTREAM_HOME="$${SLIPSTREAM_HOME:-$(CURDIR)/.slipstream}" $(BIN)/jupyter lab notebooks/

dashboard: $(STAMP)  ## the run explorer as a web page on http://127.0.0.1:8866/
	$(BIN)/slipstream dashboard

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
	$(BIN)/python bench/webhooks.py

clean:
	rm -rf $(VENV) .slipstream out .pytest_cache .mypy_cache .ruff_cache
