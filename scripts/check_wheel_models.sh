#!/usr/bin/env bash
# The wheel user's path, with no setup script: install the built wheel with [models] into a fresh venv,
# run the documented model command, and load the three default models offline (plus the shipped gold
# data). Usage: scripts/check_wheel_models.sh WHEEL  (scripts/test.sh builds the wheel and calls this).
# Quick by design: torch is pinned (the CPU build, from the pip cache or the local wheelhouse) and pip's
# cache is reused; the SmolLM2 cache is fresh, so the GGUF dequantisation is exercised too.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL="$(readlink -f "${1:?usage: $0 WHEEL}")"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
ENV_DIR="$(readlink -f build)/wheel-venv"
rm -rf "$ENV_DIR" && "$PYTHON" -m venv "$ENV_DIR"
WPY="$ENV_DIR/bin/python"
"$WPY" -m pip install -q --disable-pip-version-check -c <(echo "$TORCH_SPEC") "$TORCH_SPEC" "$WHEEL[models]"
cd "$ENV_DIR"  # away from the source tree, so only the installed wheel can be imported
"$WPY" -m neuronwidgets models install
"$WPY" -m neuronwidgets models list
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 NEURONWIDGETS_CACHE="$ENV_DIR/cache" "$WPY" - <<'PYEOF'
import warnings

import neuronwidgets
from neuronwidgets import load_model, load_ud_english

assert "/wheel-venv/" in neuronwidgets.__file__, neuronwidgets.__file__
warnings.simplefilter("ignore")
for name, text in (("minilm", "A fine film."), ("minilm-sentiment", "A wonderful, moving film."), ("smollm2", "The cat")):
    model = load_model(name)
    print(f"{name}: {model.kind}, {model.num_layers} layers", "->", model.predict(text).top if model.kind != "encoder" else "encoder")
dev = load_ud_english("dev")
assert len(dev) == 2001 and dev.num_words == 25147, (len(dev), dev.num_words)
print(f"gold data: {dev.name}, {len(dev)} sentences, {dev.num_words} words")
PYEOF
echo "wheel + [models] + models install: the three default models load offline"
