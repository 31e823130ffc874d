#!/usr/bin/env bash
# Quickstart: set up, then run the main job on the embedded default (noisyfit train: the small
# CNN on Fashion-MNIST with 40% symmetric noise). Extra arguments go to `noisyfit train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/noisyfit train "$@"
