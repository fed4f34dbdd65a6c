# The two entry points a newcomer needs: `make demo` and `make test`.
# Both build .venv from the hash-pinned locks the first time: requirements.lock is what
# production runs (the Docker image installs only it); requirements-dev.lock adds the
# test and lint tools on top, pinned to the same versions.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint lock clean

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock \
		-r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

demo: $(STAMP)
	$(BIN)/geo-sync demo

# The suite mostly waits on server processes, so it runs on more workers than CI's 2 cores
# (`make test PYTEST_WORKERS=0` runs it in one process). Tests that must not run beside
# each other share an xdist_group and so run one after another on one worker.
PYTEST_WORKERS ?= 3
test: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check geo_sync replicators verification tests bench
	$(BIN)/mypy

# Regenerate both locks after changing dependencies in pyproject.toml. The dev lock is
# resolved against the runtime lock and leaves out every package already in it.
UV := /tmp/geo-sync-uv/bin/uv
lock:
	$(PYTHON) -m venv /tmp/geo-sync-uv && /tmp/geo-sync-uv/bin/pip install --quiet uv
	$(UV) pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		-o requirements.lock
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes \
		-c requirements.lock \
		$$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/--no-emit-package \1/p' requirements.lock) \
		-o requirements-dev.lock

clean:
	rm -rf $(VENV)
