#!/usr/bin/env bash
# Build the API reference and the guides (Sphinx + autodoc/napoleon + myst-parser) into build/docs/html,
# with every warning an error (-W --keep-going) and every cross-reference checked (-n).
# Needs the `docs` extra (scripts/setup.sh installs it); does not execute the notebooks and does not need
# the JavaScript bundles.
# Always a fresh build: an incremental one does not re-read unchanged pages, so their warnings would pass.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NEURONWIDGETS_VENV:-.venv}"
PY="${PY:-$VENV/bin/python}"
rm -rf build/docs
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# the source directory is the repository root (so README/CONTRIBUTING/CHANGELOG links resolve as on
# GitHub); docs/conf.py lists the files that are read
"$PY" -m sphinx -b html -W --keep-going -n -q -c docs -d build/docs/doctrees . build/docs/html
printf '<!doctype html><meta http-equiv="refresh" content="0; url=docs/index.html">\n' >build/docs/html/index.html
echo "docs: build/docs/html/index.html"
