# sciatica-outcomes: every target creates .venv from the project's own files when missing.
# Third-party packages come from requirements.lock (exact versions, resolved by `make lock`); the project
# itself is installed on top without resolving anything again.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= reports/demo
LOCK   := requirements.lock

.PHONY: venv demo test lint typecheck wheel-test bench lock clean guide

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/sciatica-outcomes demo --out $(OUT)

# Regenerate the data guide (docs/data-guide.md and the HTML copy shipped in the package) from the schemas;
# tests/reports/test_data_guide.py fails while a committed copy is stale.
guide: $(STAMP)
	$(BIN)/sciatica-outcomes schemas guide

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python -m mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow and not packaging"
	$(MAKE) --no-print-directory wheel-test

# Build the wheel, install it into a new venv (locked dependencies) and render both reports from another
# directory with the installed command (tests/test_packaging.py).
wheel-test: $(STAMP)
	$(BIN)/python -m pytest -q -m packaging tests/test_packaging.py

bench: $(STAMP)
	@for f in benchmarks/*.py; do [ -f "$$f" ] || continue; echo "== $$f"; $(BIN)/python "$$f" || exit 1; done

# Re-resolve the newest versions allowed by pyproject.toml into requirements.lock (needs the package index).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --upgrade -o $(LOCK)

clean:
	rm -rf $(VENV) reports/demo .pytest_cache .ruff_cache .mypy_cache dist build
