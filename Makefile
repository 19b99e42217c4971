# The two commands of the README: `make run` (install + serve, no keys needed) and
# `make test` (install + the whole suite, as CI runs it).
UV := python3 -m uv

.PHONY: install run test lint audit container-check

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

# pip-audit on the locked production dependencies; says "NOT RUN" and passes where no
# vulnerability data is reachable, unless AUDIT_REQUIRED=1 (scripts/audit.sh).
audit: install
	bash scripts/audit.sh

# Slow (builds the image for real, as root): not part of `make test`.
container-check:
	bash scripts/container-check.sh

test: lint audit
	bash .ci/services
	bash .ci/install-browser
	$(UV) run pytest
