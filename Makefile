# make demo  - set up (virtualenv, dependencies) and run the whole system on the demo city
# make test  - set up the same way and run the test suite
# make bench - set up and run the benchmarks (prints `name: value unit` lines)
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies into $(VENV) ..."
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m center demo

# two test workers (pytest-xdist, a file per worker: each has its own servers; the files in the
# order tests/conftest.py gives them, those that start processes or a browser first), one when the
# tests share external servers (DATABASE_URL / REDIS_URL / MQTT_URL: the tests flush a given Redis,
# which must be empty at the start, and use a database of their own on a given PostgreSQL)
TEST_WORKERS ?= $(if $(DATABASE_URL)$(REDIS_URL)$(MQTT_URL),1,2)
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
