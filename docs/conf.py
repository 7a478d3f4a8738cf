"""Sphinx configuration of the API reference (built by scripts/docs.sh into build/docs/html).

Why Sphinx and not MkDocs + mkdocstrings: Sphinx's ``-W --keep-going -n`` turns every broken
cross-reference, malformed docstring section and unresolved type into a build failure, which is what
keeps the reference honest in CI; napoleon reads the Google-style docstrings as they are written; and
myst-parser lets the existing Markdown pages (architecture, benchmarks, contributing) be included as
they are, so GitHub and the site show the same files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not whatever is installed
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from neuronwidgets import __version__  # noqa: E402

project = "neuronwidgets"
author = "neuronwidgets contributors"
copyright = "neuronwidgets contributors"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# The source directory is the repository root (scripts/docs.sh: -c docs .), so README.md,
# CONTRIBUTING.md and CHANGELOG.md are pages of the site and every relative link between the Markdown
# files resolves exactly as it does on GitHub; only these files are read.
root_doc = "docs/index"
include_patterns = [
    "docs/**",
    "README.md",
    "CONTRIBUTING.md",
    "CHANGELOG.md",
    "neuronwidgets/core/assets/MODEL_CARD.md",
]
exclude_patterns = ["build", "js", ".venv", "docs/conf.py"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# autodoc: members in __all__ order of each subpackage, types in the description, no JS needed
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
napoleon_use_ivar = True  # a dataclass's Attributes as a field list: autodoc documents the fields too

# Every cross-reference inside the package must resolve (-n). The machines that build the docs have no
# network, so intersphinx inventories of numpy/torch/pandas/... cannot be fetched: references to types
# of other libraries are listed here instead of being silently dropped everywhere.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(np|numpy|torch|pd|pandas|plt|matplotlib|transformers|traitlets|ipywidgets|anywidget)\..*"),
    (r"py:.*", r"(collections\.abc|typing|pathlib|os|contextlib|types)\..*"),
    (r"py:class", r"(optional|callable|array-like|function)"),
    (r"py:class", r"Path"),  # pathlib.Path, named bare in annotations
    # helper types of private modules (``widgets/_views.py``) appear in a few signatures; not API
    (r"py:class", r"neuronwidgets(\.\w+)*\._\w+\.\w+"),
    (r"py:class", r"_\w+"),  # a module's private helper type named bare in a signature
    (r"py:class", r"Figure"),  # matplotlib.figure.Figure, imported under TYPE_CHECKING only (lazy matplotlib)
    (r"py:class", r"Axes"),  # matplotlib.axes.Axes (what results' plot() returns), likewise
]

html_theme = "alabaster"
html_title = f"neuronwidgets {release}"
html_static_path: list[str] = []


# ------------------------------------------------------------------------------------------------
# Cross-references to the public paths. Each object is documented once, on the page of its subpackage
# (``neuronwidgets.core.models.load_model``); docstrings and type hints name it by the path a user imports
# (``neuronwidgets.core.load_model``), by its defining module (``...models.loading.load_model``) or by a
# bare name in its own module or of the public API (``ModelHandle``). A reference resolves only when it names the very same
# Python object as a documented one; anything else stays a nitpicky error.
# ------------------------------------------------------------------------------------------------


def _lookup(path: str) -> object:
    import importlib

    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise LookupError(path)


def _documented(env):  # id(object) -> (documented name, object type), built once per build
    cache = getattr(env, "_nw_documented", None)
    if cache is None:
        cache = {}
        for name, entry in env.get_domain("py").objects.items():
            if not name.startswith("neuronwidgets.") or entry.aliased:
                continue
            try:
                cache.setdefault(id(_lookup(name)), (name, entry.objtype))
            except Exception:
                continue
        env._nw_documented = cache
    return cache


def _resolve_public(app, env, node, contnode):
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    candidates = [target]
    if node.get("py:module"):
        candidates.append(f"{node['py:module']}.{target}")
        if node.get("py:class"):
            candidates.append(f"{node['py:module']}.{node['py:class']}.{target}")
    if not target.startswith("neuronwidgets"):  # a bare public name (or Class.method) of the package
        candidates += [f"neuronwidgets.core.{target}", f"neuronwidgets.widgets.{target}"]
        # or the one documented object of that name (a type documented on its page, e.g. Method)
        same = [
            n
            for n in env.get_domain("py").objects
            if n.startswith("neuronwidgets.") and n.endswith(f".{target}")
        ]
        if len(same) == 1:
            candidates.append(same[0])
    for path in candidates:
        if not path.startswith("neuronwidgets"):
            continue
        try:
            obj = _lookup(path)
        except Exception:
            continue
        found = _documented(env).get(id(obj))
        if found is None:
            continue
        name, _ = found
        docname = env.get_domain("py").objects[name].docname
        return make_refnode(app.builder, node["refdoc"], docname, name, contnode, name)
    return None


def _trait_docstring(app, what, name, obj, options, lines):
    """A synced trait's help text is prose: keep napoleon from reading its first ``x: y`` as a type."""
    try:
        from traitlets import TraitType
    except ImportError:  # pragma: no cover
        return
    if isinstance(obj, TraitType):
        lines.insert(0, f"Synced trait ``{type(obj).__name__}`` (the browser sees it)")
        lines.insert(1, "")


def setup(app):
    app.connect("missing-reference", _resolve_public)
    app.connect("autodoc-process-docstring", _trait_docstring, priority=100)
