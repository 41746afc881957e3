# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv in the repo root if it is missing. torch is installed first,
# pinned to the CPU wheel, so nothing later can pull a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test venv browser postgres ops evidently jax-privacy clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements/ner.txt
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/ner.txt
	touch $@

venv: $(VENV)/.installed

# Evidently in an environment of its own (see requirements/evidently.txt): the reference for the drift tests
.venv-evidently/.installed: requirements/evidently.txt
	$(PYTHON) -m venv .venv-evidently
	.venv-evidently/bin/pip install --quiet -r requirements/evidently.txt
	touch $@

evidently: .venv-evidently/.installed

# jax-privacy in an environment of its own (see requirements/jax-privacy.txt): the reference for the canary bound
.venv-jax-privacy/.installed: requirements/jax-privacy.txt
	$(PYTHON) -m venv .venv-jax-privacy
	.venv-jax-privacy/bin/pip install --quiet -r requirements/jax-privacy.txt
	touch $@

jax-privacy: .venv-jax-privacy/.installed

# headless Chromium for the HTML report test (Debian package; needs root or sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "WARNING: could not install Debian chromium: the HTML report browser test will be skipped"; }

# PostgreSQL binaries for the request-log tests (Debian package; each test starts its own throw-away cluster)
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# nginx, Prometheus (with promtool) and Alertmanager for the multi-replica deployment tests (Debian packages;
# each test starts its own on loopback; the packages' own services are not used)
ops:
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 \
	  && command -v prometheus-alertmanager >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] && echo "" || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends nginx prometheus prometheus-alertmanager >/dev/null; }

demo: venv
	rm -rf runs/demo
	$(BIN)/trustfm demo --output-dir runs/demo

# the layer contracts (pyproject [tool.importlinter]) and the docs site are checked before the suite runs
test: venv browser postgres ops evidently jax-privacy
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest

clean:
	rm -rf runs .pytest_cache .site
