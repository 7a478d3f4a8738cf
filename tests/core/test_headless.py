import os
import shutil
import subprocess
import sys
from pathlib import Path

import neuronwidgets


def test_core_imports_no_widget_library() -> None:
    code = (
        "import sys, neuronwidgets.core, neuronwidgets\n"
        "bad = [m for m in ('ipywidgets', 'anywidget', 'traitlets', 'IPython') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_core_works_without_the_js_bundles(tmp_path: Path) -> None:
    src = Path(neuronwidgets.__file__).parent
    shutil.copytree(src, tmp_path / "neuronwidgets", ignore=shutil.ignore_patterns("static", "__pycache__"))
    code = (
        "import neuronwidgets.core as c\n"
        f"assert c.__file__.startswith({str(tmp_path)!r}), c.__file__\n"
        "corpus = c.as_corpus(['The cat sat.'])\n"
        "assert corpus.words == [['The', 'cat', 'sat', '.']]\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
