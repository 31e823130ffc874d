#!/usr/bin/env bash
# Quickstart: set up, then run the main job on the embedded default: `noisyfit demo` (standard
# vs Co-teaching, SELFIE and INCV on Fashion-MNIST with 40% symmetric label noise; a table,
# HTML reports and the suspected label errors). Extra arguments go to `noisyfit demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/noisyfit demo "$@"
