# The two commands of the README: `make run` (install + serve, no keys needed) and
# `make test` (install + the whole suite, as CI runs it).
UV := python3 -m uv

.PHONY: install run test lint

install:
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --quiet

run: install
	$(UV) run ai-helper-core serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run lint-imports

test: lint
	bash .ci/services
	bash .ci/install-browser
	$(UV) run pytest
