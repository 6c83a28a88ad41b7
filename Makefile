# The two commands of the README's quick start. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# No cache: a verdict cached before the tree changed (a new logs/, say) would hide the change's.
LINT = $(BIN)/ruff check --no-cache tb_activations tests demo benchmarks

.DEFAULT_GOAL := install
.PHONY: demo demo-attention test install browser lint backends typescript

# The venvs make keeps: .venv for the package with TensorFlow and the test
# tools, and one per other Keras backend, which must never see TensorFlow
# (tests/test_backends.py runs its script in each), named .venv-NAME. Each
# repairs itself the same way, through venv_rules below.
JAX_VENV := .venv-jax
TORCH_VENV := .venv-torch
# The backend venvs `make test` installs; `make test BACKENDS=` skips them
# (their tests then skip; under CI any skip fails: tests/conftest.py).
BACKENDS ?= jax torch

# $(call venv_rules,NAME,DIR): the rules that keep venv DIR installed with the
# recipe in the variable install-NAME.
# - DIR/.installed is written when an install completed, removed when one starts;
#   a second run with the same pyproject.toml installs nothing.
# - DIR/.installing is there while an install runs: found at the start of a run,
#   the last one was cut short.
# - DIR_OK, asked on every run, is "yes" when DIR's pip runs (so its python does)
#   and no install in it was cut short. Otherwise new-NAME makes the venv again
#   from scratch, since a half-written package can look installed to pip.
define venv_rules
$(2)_OK := $$(shell $(2)/bin/pip --version >/dev/null 2>&1 && test ! -e $(2)/.installing && echo yes)

.PHONY: new-$(1)
new-$(1):
	@test ! -e $(2) || echo "$(2) is incomplete (an install was cut short, or its pip does not run): making it again."
	rm -rf $(2)
	$$(PYTHON) -m venv $(2)
	$(2)/bin/python -m pip install --quiet --upgrade pip

$(2)/.installed: pyproject.toml $$(if $$($(2)_OK),,new-$(1))
	rm -f $$@
	touch $(2)/.installing
	$$(install-$(1))
	rm $(2)/.installing
	touch $$@
endef

# keras-hub's backbones are test models, in this venv only. Its requirement
# tensorflow-text would pull the full `tensorflow` beside `tensorflow-cpu`;
# backbones built with random weights need neither it nor a download, so it
# goes in without its requirements, and those it imports go in by name.
KERAS_HUB := keras-hub==0.32.0
KERAS_HUB_IMPORTS := absl-py packaging kagglehub kagglesdk==0.1.28 regex rich sentencepiece tokenizers
define install-venv
$(BIN)/python -m pip install --quiet -e ".[cpu,test]"
$(BIN)/python -m pip install --quiet --no-deps "$(KERAS_HUB)"
$(BIN)/python -m pip install --quiet $(KERAS_HUB_IMPORTS)
endef
install-venv-jax = $(JAX_VENV)/bin/python -m pip install --quiet -e ".[jax]"
# torch first, pinned: this machine's pip finds a CPU build, 2.13.0+cpu, among
# its local wheels; a pin without a local label matches it, and it sorts above
# PyPI's 2.13.0. The extra's "torch>=2.13" is then satisfied and left alone.
# The extra alone would take PyPI's newest torch, a CUDA build that pulls
# gigabytes of nvidia-* packages. Elsewhere, name a CPU build here, e.g.
# make test TORCH_REQUIREMENT="torch==2.13.0+cpu" with pip pointed at an index that has it.
TORCH_REQUIREMENT ?= torch==2.13.0
define install-venv-torch
$(TORCH_VENV)/bin/python -m pip install --quiet "$(TORCH_REQUIREMENT)"
$(TORCH_VENV)/bin/python -m pip install --quiet -e ".[torch]"
endef

$(eval $(call venv_rules,venv,$(VENV)))
$(eval $(call venv_rules,venv-jax,$(JAX_VENV)))
$(eval $(call venv_rules,venv-torch,$(TORCH_VENV)))

install: $(VENV)/.installed

backends: $(BACKENDS:%=.venv-%/.installed)

# Debian's Chromium: Playwright cannot download its own browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; }

# TypeScript checks the panel's modules (tests/test_frontend.py); npm's
# registry has it, pinned in package.json and package-lock.json.
typescript: node_modules/.installed

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch $@

test: install browser backends typescript
	$(LINT)
	CI=$${CI:-} $(BIN)/python -m pytest $(PYTEST_ARGS)

# Trains the demo model (about a minute on two CPU cores), then serves TensorBoard
# on 127.0.0.1 until Ctrl-C. Flags go in DEMO_ARGS, e.g. make demo DEMO_ARGS="--epochs 20";
# DEMO_NO_TENSORBOARD=1 (or DEMO_ARGS=--no-tensorboard) stops after training.
DEMO_ARGS ?=
demo: install
	$(BIN)/python demo/train.py $(DEMO_ARGS)

# A tiny transformer learns to reverse sequences (under a minute on two CPU
# cores); its attention heads form an anti-diagonal. Same flags as demo.
demo-attention: install
	$(BIN)/python demo/attention.py $(DEMO_ARGS)

# `make test`'s lint line. The quick-start test runs it in a clone with
# `make -o install lint BIN=...`, borrowing an installed venv's ruff.
lint: install
	$(LINT)
