"""Hatchling build hook: bundle the TypeScript front ends with npm when the bundles are missing.

Installing a built wheel never runs this (the bundles are inside it), so users never need Node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLES = (
    "token_heatmap.js",
    "ablation_panel.js",
    "neuron_table.js",
    "probe_report.js",
    "matrix_view.js",
    "patching_view.js",
)


class JSBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        static = root / "neuronwidgets" / "static"
        if all((static / name).exists() for name in BUNDLES):
            return
        if os.environ.get("NEURONWIDGETS_SKIP_JS") == "1":
            return  # core-only development; the widgets will say their bundle is missing
        js = root / "js"
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "neuronwidgets/static/ has no JavaScript bundles and npm is not on PATH: install Node.js "
                "(>=18) to build from source, or install a released wheel, which ships the bundles."
            )
        if not (js / "node_modules").exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=js, check=True)
        subprocess.run([npm, "run", "build"], cwd=js, check=True)
