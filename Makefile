# Two commands for a new machine: `make test` and `make snapshots`. Both build .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Extras installed into the project's virtualenv: the embedded database, the test tools.
EXTRAS ?= test,embedded

.PHONY: venv test snapshots lint clean demo bench docs

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The daily job: bring the schema up to date, then run every shard of today's run.
snapshots: venv
	bin/etl schema apply
	bin/etl run

# The whole job against a simulated AppView, checked against its truth (own database in .etl/demo).
demo: venv
	bin/etl demo --users $(or $(DEMO_USERS),3000) --days 2

# Performance figures (README "Performance"): about an hour at full size; QUICK=1 for toy sizes.
bench: venv
	$(BIN)/python -m tests.bench $(if $(QUICK),--quick)

# Regenerate the README's configuration table and command reference.
docs: venv
	$(BIN)/python -m etl.docs

lint: venv
	$(BIN)/ruff check .

clean:
	-test -x bin/etl && test -x $(BIN)/python && bin/etl db stop
	-test -x bin/etl && test -x $(BIN)/python && test -d .etl/demo && ETL_DATA_DIR=.etl/demo bin/etl db stop
	rm -rf $(VENV) .etl build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
