#!/usr/bin/env bash
# Set up, lint (ruff check + ruff format --check + the import layers), then run the whole test
# suite (CPU).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/lint-imports  # the layers of pyproject.toml [tool.importlinter]
exec .venv/bin/python -m pytest -q "$@"
