#!/usr/bin/env bash
# Set everything up (Chromium included), then run every test layer:
#   lint and types (ruff, mypy, tsc) · JS unit tests (vitest) · Python tests: core, widget models and
#   the real-browser tests (JupyterLab 4, Notebook 7, marimo + headless Chromium) · the notebooks executed headless into the course
#   pages (build/course, opened by a browser test) · the practicals' worked solutions executed ·
#   the built wheel carries the bundles and the gold data and installs without Node; installed with
#   [models] in a fresh venv, `python -m neuronwidgets models install` gives the three default models ·
#   the docs build (warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --browser
VENV="${NEURONWIDGETS_VENV:-.venv}"
PY="$VENV/bin/python"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NEURONWIDGETS_REQUIRE_BROWSER=1
step() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

step "lint and format (ruff)"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
step "types (mypy, tsc --noEmit)"
"$PY" -m mypy
(cd js && npm run --silent typecheck)
step "JS unit tests (vitest)"
(cd js && npm test --silent)
step "the wheel ships the bundles and installs without Node"
rm -rf build/wheel build/wheel-install && mkdir -p build/wheel
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w build/wheel .
"$PY" - <<'PYEOF'
import glob, zipfile
names = zipfile.ZipFile(glob.glob("build/wheel/*.whl")[0]).namelist()
bundles = [n for n in names if n.startswith("neuronwidgets/static/") and n.endswith(".js")]
assert bundles, "the wheel has no JS bundles"
print("bundles in wheel:", ", ".join(sorted(bundles)))
ud = {n.rsplit("/", 1)[-1] for n in names if n.startswith("neuronwidgets/data/ud_english_ewt/")}
assert {"en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu", "LICENSE.txt", "README.md"} <= ud, ud
PYEOF
PATH="$(dirname "$(readlink -f "$PY")")" "$PY" -m pip install -q --no-deps --target build/wheel-install build/wheel/*.whl
test -f build/wheel-install/neuronwidgets/static/token_heatmap.js
step "the wheel with [models] in a fresh venv, no setup script: models install, default models offline"
scripts/check_wheel_models.sh build/wheel/*.whl
step "the notebooks run headless, top to bottom, into the course pages (build/course: a page each + index)"
rm -rf build/course && mkdir -p build
"$PY" -m neuronwidgets course build build/course --only 00_tour 01_visualization_corpus_unsupervised \
  02_probing 03_ablation 04_causation 05_concepts 06_patching
step "the practicals' worked solutions run and pass their checkers"
for nb in notebooks/solutions/*_solutions.ipynb; do
  "$PY" -m jupyter nbconvert --to notebook --execute "$nb" \
    --ExecutePreprocessor.timeout=600 --output-dir build/solutions --output "$(basename "$nb" .ipynb).executed.ipynb"
done
step "the API reference builds with warnings as errors (Sphinx -W -n)"
PY="$PY" scripts/docs.sh
step "Python tests: core, widget models, real browser"
"$PY" -m pytest tests -q -ra "$@"
