# Two commands on a fresh machine: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SCALE  ?= S

.PHONY: setup demo test test-external bench docs stop clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

## demo: start embedded servers (unless FLYWHEEL_DATABASE_URL/FLYWHEEL_REDIS_URL are set), load sample data, show the metrics
demo: setup
	$(BIN)/flywheel-sync demo

## test: the whole suite against embedded servers (or FLYWHEEL_TEST_DATABASE_URL / FLYWHEEL_TEST_REDIS_URL)
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: the benchmark tables (SCALE=S|M|L)
bench: setup
	$(BIN)/python bench/run.py --scale $(SCALE)

## docs: regenerate docs/commands.md from --help
docs: setup
	$(BIN)/python -m flywheel_sync.cli.docgen > docs/commands.md

## stop: stop the demo's embedded servers
stop: setup
	$(BIN)/flywheel-sync embedded stop

clean: stop
	rm -rf .flywheel
