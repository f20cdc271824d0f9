# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment is rebuilt only when pyproject.toml changes (a stamp file records it).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: demo test lint bench clean setup sysdeps

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1): pip takes them from the
	@# local wheel store on these machines instead of downloading several GB.
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check longvid tests bench

# System packages the tests need: Debian's chromium (the audit report is opened in it headless).
# Does nothing when chromium is already on PATH.
sysdeps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) for the audit report test"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: $(STAMP) sysdeps
	$(BIN)/ruff check longvid tests bench
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m longvid.demo --out $(DEMO_OUT)

# make bench [BENCH="decode loader"]: every benchmark, or the named ones
bench: $(STAMP)
	$(BIN)/python -m bench.run_all $(BENCH)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
