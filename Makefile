# The two commands of the README's quick start. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Written when an install into $(VENV) completed, removed when one starts.
STAMP := $(VENV)/.installed
# There while an install runs: found at the start of a run, the last one was cut short.
INSTALLING := $(VENV)/.installing
# No cache: a verdict cached before the tree changed (a new logs/, say) would hide the change's.
LINT = $(BIN)/ruff check --no-cache tb_activations tests demo benchmarks

.DEFAULT_GOAL := install
.PHONY: demo test install browser lint new-venv

# Asked on every run: "yes" when $(VENV)'s pip runs (so its python does) and no
# install in it was cut short. Otherwise the venv is made again from scratch,
# since a half-written package can look installed to pip.
VENV_OK := $(shell $(BIN)/pip --version >/dev/null 2>&1 && test ! -e $(INSTALLING) && echo yes)

new-venv:
	@test ! -e $(VENV) || echo "$(VENV) is incomplete (an install was cut short, or its pip does not run): making it again."
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A second run with the same pyproject.toml installs nothing.
$(STAMP): pyproject.toml $(if $(VENV_OK),,new-venv)
	rm -f $@
	touch $(INSTALLING)
	$(BIN)/python -m pip install --quiet -e ".[cpu,test]"
	rm $(INSTALLING)
	touch $@

install: $(STAMP)

# Debian's Chromium: Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

test: install browser
	$(LINT)
	CI=$${CI:-} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Trains the demo model (about a minute on two CPU cores), then serves TensorBoard
# on 127.0.0.1 until Ctrl-C. Flags go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--epochs 20";
# DEMO_NO_TENSORBOARD=1 (or DEMO_ARGS=--no-tensorboard) stops after training.
DEMO_ARGS ?=
demo: install
	$(BIN)/python demo/train.py $(DEMO_ARGS)

# `make test`'s lint line. The quick-start test runs it in a clone with
# `make -o install lint BIN=...`, borrowing an installed venv's ruff.
lint: install
	$(LINT)
