"""Fixtures of the browser tests: a private JupyterLab server (session), headless Debian Chromium driven by
Playwright (session), and a fresh tab per test; a failing test leaves a screenshot whose path is printed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import CHROMIUM_ARGS, LabServer, Tab

DEFAULT_CHROMIUM = "/usr/bin/chromium"


def unavailable(reason: str) -> None:
    """Skip, or fail where ``NEURONWIDGETS_REQUIRE_BROWSER=1`` (CI: a missing browser is a broken setup)."""
    if os.environ.get("NEURONWIDGETS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (NEURONWIDGETS_REQUIRE_BROWSER=1: failing instead of skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("NEURONWIDGETS_CHROMIUM") or DEFAULT_CHROMIUM
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        unavailable(
            f"browser tests need Debian's Chromium at {path} (apt-get install chromium; .ci/run installs it), "
            "or NEURONWIDGETS_CHROMIUM=/path/to/chromium"
        )
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("browser tests need the playwright Python package (pip install -e .[dev])")
    pw = sync_playwright().start()
    try:
        # Never Playwright's downloaded browser (its download fails here): always the system Chromium.
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def lab_server(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """``jupyter lab`` of this interpreter on a free port, isolated in a temporary folder; always stopped,
    kernels included."""
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    t = Tab.open(browser)
    yield t
    t.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """On a failure, screenshot every tab the test holds (directly or as ``.tab``) and print where."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when not in ("setup", "call") or not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for name, value in funcargs.items():
        t = value if isinstance(value, Tab) else getattr(value, "tab", None)
        if isinstance(t, Tab):
            report = t.failure_report(f"{item.name}-{name}")
            rep.sections.append((f"browser ({name})", report))
            terminal = item.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                terminal.write_line(f"\n[browser] {item.nodeid}: {report.splitlines()[0]}")
