# The two commands of the README: `make demo` (the main job on the built-in offline data) and
# `make test`. Both set up the pinned environment first.
PRESET ?= mnist5k-multigrid
WORKDIR ?= runs/$(PRESET)
PYTEST_ARGS ?=

.PHONY: env env-latest demo test test-latest test-all test-slow lint bench-quick

env:
	@scripts/setup_env.sh primary

env-latest:
	@scripts/setup_env.sh latest

demo: env
	.venv/bin/mgebm run --preset $(PRESET) --workdir $(WORKDIR)

test: env
	.venv/bin/python -m pytest -n 2 $(PYTEST_ARGS)

# The core (no TFX) in the latest TensorFlow.
test-latest: env-latest
	.venv-latest/bin/python -m pytest -n 2 -m "not slow and not tfx" $(PYTEST_ARGS)

test-all: env
	.venv/bin/python -m pytest -n 2 -m "" $(PYTEST_ARGS)

# Only the slow tests (multi-worker runs, scheduled pipeline runs, ...): CI runs them after `test`.
test-slow: env
	.venv/bin/python -m pytest -n 2 -m slow $(PYTEST_ARGS)

lint: env
	.venv/bin/ruff check .

bench-quick: env
	.venv/bin/python -m benchmarks.langevin --quick
