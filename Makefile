# Two commands do everything on a fresh machine: `make demo` and `make test`.
# The virtual environment is rebuilt only when pyproject.toml changes (a stamp file records it).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: demo test lint bench clean setup

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

test: $(STAMP)
	$(BIN)/ruff check longvid tests bench
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m longvid.demo --out $(DEMO_OUT)

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
