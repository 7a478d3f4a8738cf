#!/usr/bin/env bash
# Set everything up, then open JupyterLab on the tour notebook (the embedded default models, offline).
#   scripts/tour.sh             open JupyterLab on notebooks/00_tour.ipynb
#   scripts/tour.sh --headless  execute the tour without a screen; writes build/00_tour.executed.ipynb
#                               and the HTML export the tour makes, build/tour_heatmap.html
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
VENV="${NEURONWIDGETS_VENV:-.venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${1:-}" = "--headless" ]; then
  mkdir -p build
  "$VENV/bin/python" -m jupyter nbconvert --to notebook --execute notebooks/00_tour.ipynb \
    --ExecutePreprocessor.timeout=600 --output-dir build --output 00_tour.executed.ipynb
  echo "executed tour: build/00_tour.executed.ipynb"
else
  exec "$VENV/bin/python" -m jupyter lab notebooks/00_tour.ipynb
fi
