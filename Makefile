# One entry point for the everyday jobs. `make test` is what CI runs.
.PHONY: setup test lint format types bench reference clean

setup:
	python3 -m venv .venv
	.venv/bin/pip install -e '.[dev]'

test:
	bash scripts/test.sh

lint:
	.venv/bin/ruff check src tests bench
	.venv/bin/lint-imports

format:
	.venv/bin/ruff format src tests bench
	.venv/bin/ruff check --fix src tests bench

types:
	.venv/bin/mypy

bench:
	@for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done

reference:
	.venv/bin/python -m clusterdeck.spec.reference --write README.md

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
