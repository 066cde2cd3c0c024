# posepipe: `make demo` and `make test` do all the set-up on a fresh machine (Python 3.11 only).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SOURCE ?=
ROOT ?= ./data
WORKERS ?=

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL ?= WARNING
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install demo test lint clean test-deps

# unar (The Unarchiver, Debian package) is rarfile's backend for the UCF101/UCF11 .rar archives
# (RAR 1.5-5, free software; the non-free unrar is not needed).
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 2; }
	command -v unar >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq unar; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# For the tests only (never for `make demo`): Debian's Chromium renders the report pages headless,
# and Debian's PostgreSQL server backs the Prefect server in the two-retrains race test.
test-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; fi

demo: $(STAMP)
	$(BIN)/posepipe demo --root $(ROOT) $(if $(SOURCE),--source $(SOURCE)) $(if $(WORKERS),--workers $(WORKERS))

lint: $(STAMP)
	$(BIN)/ruff check posepipe flows tasks schemas storage tests bench
	$(BIN)/lint-imports

test: $(STAMP) test-deps lint
	$(BIN)/pytest -q tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
