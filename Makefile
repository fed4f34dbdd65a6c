# The two entry points a newcomer needs: `make demo` and `make test`.
# Both build .venv from requirements.lock (hash-pinned) the first time.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: $(STAMP)
	$(BIN)/geo-sync demo

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check geo_sync replicators verification tests bench
	$(BIN)/mypy

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	$(PYTHON) -m venv /tmp/geo-sync-uv && /tmp/geo-sync-uv/bin/pip install --quiet uv
	/tmp/geo-sync-uv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV)
