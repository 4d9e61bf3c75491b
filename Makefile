# Two commands: `make demo` (set up + run the demo) and `make test` (set up + run the tests).
.PHONY: setup setup-dev demo test lint bench

setup:
	./scripts/setup.sh

setup-dev:
	./scripts/setup.sh dev

demo: setup
	.venv/bin/alignkit demo

test: setup-dev
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup-dev
	.venv/bin/ruff check .
