# Queast Integration Layer: the two commands a new user needs are `make run` and `make test`.
# Everything else is a step of those. Services run on loopback: Kafka 127.0.0.1:9092 (KRaft,
# from Maven Central jars), Redis 127.0.0.1:6379 (Debian's redis-server), see deploy/local/.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

export QI_KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export QI_REDIS_URL ?= redis://127.0.0.1:6379/0
# Everything here is local: the worker and the API may start with the published development key.
export QI_ENV ?= development

.PHONY: install up down status promtool chromium lint typecheck test test-unit test-integration run bench bench-routing bench-delivery bench-isolation bench-identity bench-hubspot bench-pipedrive bench-replay clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python >= 3.11 is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

up:
	deploy/local/up.sh

down:
	deploy/local/down.sh

status:
	deploy/local/status.sh

# promtool (Debian's prometheus package, extracted into .local/ without root) for the alert
# rules checks of tests/deploy/.
promtool:
	deploy/local/promtool.sh >/dev/null

# Headless Chromium (Debian's chromium package, apt-get installed when missing and root) for the
# console's browser tests (tests/browser/, driven by Playwright's Python package).
chromium:
	deploy/local/chromium.sh >/dev/null

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test-unit: install
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test-integration: install up
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

# Lint, types, then every test against the real Kafka and Redis that `up` started.
# Three test processes on two cores, each taking whole files: most integration tests wait on a
# worker, a broker or a partner sandbox rather than on the CPU (a quiet run used about half of
# two cores with two processes).
TEST_PROCESSES ?= 3

test: install lint typecheck up promtool chromium
	$(BIN)/pytest -q -ra -n $(TEST_PROCESSES) --dist loadfile $(PYTEST_ARGS)

# The main job on the local default: set up, run the worker on a sample stream, show it live.
run: install up
	$(BIN)/queast-integrations demo

bench: bench-routing bench-delivery bench-isolation bench-identity bench-hubspot bench-pipedrive bench-replay

bench-routing: install up
	$(BIN)/python -m bench.routing

bench-delivery: install up
	$(BIN)/python -m bench.delivery

bench-replay: install up
	$(BIN)/python -m bench.replay

bench-isolation: install up
	$(BIN)/python -m bench.isolation

bench-identity: install
	$(BIN)/python -m bench.identity.evaluate

bench-hubspot: install up
	$(BIN)/python -m bench.hubspot_rate

bench-pipedrive: install
	$(BIN)/python -m bench.pipedrive_links

.PHONY: bench-inbound
bench-inbound: install up
	$(BIN)/python -m bench.inbound

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
