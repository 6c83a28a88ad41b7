# The two commands of the README's quick start. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install browser lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[cpu,test]"
	touch $@

install: $(VENV)/.installed

# Debian's Chromium: Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

test: install browser
	$(BIN)/ruff check tb_activations tests demo benchmarks
	CI=$${CI:-} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Trains the demo model (about a minute on two CPU cores), then serves TensorBoard
# on 127.0.0.1 until Ctrl-C. Flags go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--epochs 20";
# DEMO_NO_TENSORBOARD=1 (or DEMO_ARGS=--no-tensorboard) stops after training.
DEMO_ARGS ?=
demo: install
	$(BIN)/python demo/train.py $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check tb_activations tests demo benchmarks
