#!/usr/bin/env bash
# Set up noisyfit on a Debian/Ubuntu machine with Python >= 3.10: a virtual environment in
# .venv with noisyfit and its test tools, and Fashion-MNIST (Debian's dataset-fashion-mnist)
# where apt exists and the data is missing. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)   # the versions noisyfit is tested with

# pip on some machines warns about every unreachable index folder; keep real errors only
pip_install() { .venv/bin/pip install -q "$@" 2> >(grep -v "neither a file nor a directory" >&2); }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "[setup] installing ${TORCH_PINS[*]}"
  pip_install "${TORCH_PINS[@]}"
fi
if ! .venv/bin/python -c "import noisyfit, pytest, hypothesis, matplotlib, importlinter" 2>/dev/null; then
  echo "[setup] installing noisyfit (editable) with test and report extras"
  pip_install -e ".[test,report]"
fi

FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$FMNIST" ] && [ -z "${NOISYFIT_DATA:-}" ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing Debian's dataset-fashion-mnist"
  $SUDO apt-get update -qq || true
  $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
# optional: Chromium, used only by the test that opens a run report in a headless browser
# (the test is skipped without it); a failure here never fails the set-up
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "[setup] installing chromium (optional, for the report test)"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || echo "[setup] chromium not installed (optional; the report test will be skipped)"
fi
echo "[setup] ready: $(.venv/bin/noisyfit --version)"
