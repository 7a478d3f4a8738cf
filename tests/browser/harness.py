"""The machinery of the browser tests: a private JupyterLab server, notebooks written for it, and the page
operations that open one, run it and report what its cells said.

Three traps, each met here (see docs/architecture.md, "Browser tests"):

- ``page.goto`` waits for ``domcontentloaded`` only: JupyterLab's ``load`` event may never come;
- notebooks carry kernelspec metadata, else a kernel-picker dialog blocks "run all";
- ``commands.execute("notebook:run-all-cells")`` is fired from the page without awaiting it (awaiting it in
  ``page.evaluate`` can hang); completion is read by polling the cells' execution counts instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

SERVER_START_TIMEOUT = 90.0  # s: a cold `jupyter lab` on 2 busy cores takes ~5-15 s
APP_READY_TIMEOUT = 90.0  # s: page shell up, notebook open, kernel idle
RUN_TIMEOUT = 240.0  # s: run-all incl. first kernel start, torch import and model load (~20-30 s here)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


@dataclass
class LabServer:
    """A ``jupyter lab`` process of this interpreter, isolated in ``base`` (config, data, runtime,
    settings and workspaces all live there, so nothing leaks between runs or from the user's home)."""

    base: Path
    port: int = 0
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> Path:
        """The server's root folder: notebooks go here."""
        return self.base / "root"

    @property
    def log_path(self) -> Path:
        return self.base / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{quote(name)}?token={self.token}"

    # -- life cycle ------------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        iso = {
            # The python3 kernelspec and the anywidget/ipywidgets lab extensions come from the venv's
            # share/jupyter (sys.prefix), which Jupyter searches whatever these point to.
            "JUPYTER_CONFIG_DIR": self.base / "config",
            "JUPYTER_DATA_DIR": self.base / "data",
            "JUPYTER_RUNTIME_DIR": self.base / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": self.base / "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": self.base / "lab-workspaces",
            "IPYTHONDIR": self.base / "ipython",
        }
        for key, path in iso.items():
            path.mkdir(parents=True, exist_ok=True)
            env[key] = str(path)
        env.pop("JUPYTER_PATH", None)
        env.pop("JUPYTER_CONFIG_PATH", None)
        # The kernels inherit this: no model hub, no telemetry, output unbuffered.
        env.update(
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONUNBUFFERED="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        return env

    def _write_lab_settings(self) -> None:
        """No news, no update check, no toasts over the notebook (they would also phone home)."""
        folder = self.base / "lab-settings" / "@jupyterlab" / "apputils-extension"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        )

    def command(self) -> list[str]:
        """The server's command line (``jupyter lab``; a subclass may serve another Jupyter front end)."""
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",  # ServerApp.token is its deprecated alias
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # containers and CI run as root
        return cmd

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_lab_settings()
        self.port = self.port or free_port()
        cmd = self.command()
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.root,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"jupyter lab did not answer on {self.url} within {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Shut the kernels down, stop the server, and kill whatever of ours outlives that."""
        if self.proc is None:
            return
        children = _child_pids(self.proc.pid)
        if self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "/api/kernels", timeout=5):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=15)
            except (OSError, urllib.error.URLError, ValueError):
                pass  # the server is going anyway; leftovers are killed below
            children |= _child_pids(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)  # the server also shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in children:  # kernels run in their own sessions: end them by id if still there
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None

    # -- REST ------------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"token {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def shutdown_sessions(self, path: str | None = None) -> None:
        """End the kernel sessions (of one notebook, or all), freeing the kernels' memory."""
        try:
            for session in self.api("GET", "/api/sessions"):
                if path is None or session.get("path") == path:
                    self.api("DELETE", f"/api/sessions/{session['id']}", timeout=20)
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])


def _child_pids(pid: int) -> set[int]:
    """Direct children of ``pid`` (the kernels a server launched), read from /proc."""
    out: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


# ------------------------------------------------------------------------------------------------
# Notebooks
# ------------------------------------------------------------------------------------------------


def write_notebook(folder: Path, name: str, cells: Iterable[str]) -> Path:
    """A notebook of code cells with kernelspec metadata (so Lab opens it without a kernel picker)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    path = folder / name
    nbformat.write(nb, path)
    return path


# JS helpers, evaluated in the page. ``__nwPanel(path)`` finds the notebook panel of ``path``.
_FIND_PANEL = """
window.__nwPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of Array.from(app.shell.widgets('main'))) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
};
"""

_PANEL_STATE = """
(path) => {
  if (!window.jupyterapp) return {stage: 'app'};
  if (!window.__nwPanel) { FIND_PANEL }
  const panel = window.__nwPanel(path);
  if (!panel) return {stage: 'panel'};
  if (!panel.context.isReady) return {stage: 'context'};
  const dialog = document.querySelector('.jp-Dialog');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {
    stage: kernel ? 'kernel' : 'session',
    status: kernel ? kernel.status : null,
    dialog: dialog ? dialog.innerText : null,
  };
}
""".replace("FIND_PANEL", _FIND_PANEL.replace("\n", " "))

_CELLS_STATE = """
(path) => {
  const panel = window.__nwPanel(path);
  if (!panel) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  const list = panel.content.model.cells;
  for (let i = 0; i < list.length; i++) {
    const c = list.get(i);
    if (c.type !== 'code') continue;
    const outs = [];
    for (let j = 0; j < c.outputs.length; j++) outs.push(c.outputs.get(j).toJSON());
    cells.push({index: i, count: c.executionCount, state: c.executionState || null, outputs: outs});
  }
  return {status: kernel ? kernel.status : null, cells, runError: window.__nwRunError || null};
}
"""


class NotebookError(AssertionError):
    """A notebook did not open or run; the message carries the cells' errors and the server log."""


def _output_text(out: dict[str, Any]) -> str:
    kind = out.get("output_type")
    if kind == "error":
        tb = "\n".join(out.get("traceback") or [])
        return strip_ansi(tb) or f"{out.get('ename')}: {out.get('evalue')}"
    if kind == "stream":
        text = out.get("text", "")
        return "".join(text) if isinstance(text, list) else str(text)
    return ""


@dataclass
class OpenNotebook:
    """A notebook open in a page of a :class:`LabServer`."""

    server: LabServer
    page: Any  # playwright.sync_api.Page
    name: str

    def state(self) -> dict[str, Any]:
        return self.page.evaluate(_CELLS_STATE, self.name)

    def cell_errors(self, state: dict[str, Any] | None = None) -> list[str]:
        """Error outputs of the code cells, as read from the page (traceback text, ANSI stripped)."""
        state = state or self.state() or {"cells": []}
        errs = []
        for cell in state["cells"]:
            for out in cell["outputs"]:
                if out.get("output_type") == "error":
                    errs.append(f"cell {cell['index']}: {_output_text(out)}")
        return errs

    def stderr(self, state: dict[str, Any] | None = None) -> str:
        state = state or self.state() or {"cells": []}
        return "\n".join(
            f"cell {c['index']}: {_output_text(o)}"
            for c in state["cells"]
            for o in c["outputs"]
            if o.get("output_type") == "stream" and o.get("name") == "stderr"
        )

    def describe(self, state: dict[str, Any] | None = None) -> str:
        """Everything useful after a failure: cell counts, errors, stderr and the server log tail."""
        try:
            state = state or self.state()
        except Exception as err:  # the page itself may be gone
            state = None
            page_err = f"(cannot read the page: {err})"
        else:
            page_err = ""
        parts = [page_err] if page_err else []
        if state:
            counts = [(c["index"], c["count"], c["state"]) for c in state["cells"]]
            parts.append(f"kernel status {state['status']!r}; cells (index, count, state): {counts}")
            if state.get("runError"):
                parts.append(f"run-all command failed: {state['runError']}")
            errs = self.cell_errors(state)
            if errs:
                parts.append("cell errors:\n" + "\n".join(errs))
            err_text = self.stderr(state)
            if err_text.strip():
                parts.append("stderr:\n" + err_text[-3000:])
        parts.append("server log tail:\n" + self.server.log_tail(25))
        return "\n".join(parts)

    def run_all(self, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """Run every cell and wait until each code cell has an execution count and the kernel is idle.
        Raises :class:`NotebookError` with the cells' tracebacks as soon as one fails. Works on a notebook
        run before, too: only counts above the highest one before this run count as done."""
        before = max((c["count"] or 0 for c in (self.state() or {"cells": []})["cells"]), default=0)
        self.page.evaluate(
            """(path) => {
              const app = window.jupyterapp;
              app.shell.activateById(window.__nwPanel(path).id);
              window.__nwRunError = null;
              // fired, not awaited: awaiting it from page.evaluate can hang
              app.commands.execute('notebook:run-all-cells')
                .catch((e) => { window.__nwRunError = String(e && e.stack || e); });
            }""",
            self.name,
        )
        deadline = time.monotonic() + timeout
        state: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            state = self.state()
            if state:
                ran = {**state, "cells": [c for c in state["cells"] if (c["count"] or 0) > before]}
                if self.cell_errors(ran) and state["status"] == "idle":
                    raise NotebookError(f"a cell of {self.name} failed:\n{self.describe(state)}")
                if state.get("runError"):
                    raise NotebookError(f"run-all failed in {self.name}:\n{self.describe(state)}")
                done = all((c["count"] or 0) > before and c["state"] != "running" for c in state["cells"])
                if done and state["status"] == "idle":
                    return state
                if state["status"] in ("dead", "autorestarting"):  # it crashed (e.g. out of memory)
                    raise NotebookError(f"the kernel of {self.name} died:\n{self.describe(state)}")
            time.sleep(0.25)
        raise NotebookError(
            f"{self.name} did not finish running within {timeout:.0f} s:\n{self.describe(state)}"
        )

    def wait_for(self, selector: str, timeout: float = 60.0) -> Any:
        """Wait for ``selector`` to be visible in the page; on timeout say what the cells said."""
        loc = self.page.locator(selector).first
        try:
            loc.wait_for(state="visible", timeout=timeout * 1000)
        except Exception as err:
            raise NotebookError(
                f"{selector!r} did not appear in {self.name}: {err}\n{self.describe()}"
            ) from None
        return loc

    def kernel_exec(self, code: str, timeout: float = 60.0) -> str:
        """Run ``code`` in this notebook's kernel (outside any cell) and return what it printed: a way
        to ask the Python side what it holds after the page changed something."""
        key = secrets.token_hex(4)
        self.page.evaluate(
            """([path, code, key]) => {
              const kernel = window.__nwPanel(path).sessionContext.session.kernel;
              const res = (window.__nwExec = window.__nwExec || {});
              const r = (res[key] = {done: false, out: '', error: null});
              const future = kernel.requestExecute({code, store_history: false, silent: false});
              future.onIOPub = (msg) => {
                const t = msg.header.msg_type, c = msg.content;
                if (t === 'stream') r.out += c.text;
                else if (t === 'execute_result') r.out += c.data['text/plain'];
                else if (t === 'error') r.error = c.ename + ': ' + c.evalue + '\\n' + c.traceback.join('\\n');
              };
              future.done.then(() => { r.done = true; }, (e) => { r.error = String(e); r.done = true; });
            }""",
            [self.name, code, key],
        )
        r = poll(
            lambda: self.page.evaluate("(key) => window.__nwExec[key]", key),
            lambda r: bool(r and r["done"]),
            timeout,
            what=f"the kernel to run {code!r}",
        )
        if r["error"]:
            raise NotebookError(f"{code!r} failed in the kernel of {self.name}:\n{strip_ansi(r['error'])}")
        return str(r["out"])

    def execute_command(self, command: str, args: dict[str, Any] | None = None) -> None:
        """Fire a JupyterLab command (not awaited, see the module docstring)."""
        self.page.evaluate(
            """([cmd, args]) => {
              window.jupyterapp.commands.execute(cmd, args)
                .catch((e) => { window.__nwCommandError = String(e); });
            }""",
            [command, args or {}],
        )


def open_notebook(
    server: LabServer, page: Any, name: str, timeout: float = APP_READY_TIMEOUT
) -> OpenNotebook:
    """Open ``name`` (relative to the server root) in JupyterLab and wait until its kernel is idle."""
    page.goto(server.notebook_url(name), wait_until="domcontentloaded", timeout=timeout * 1000)
    nb = OpenNotebook(server, page, name)
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_PANEL_STATE, name)
        if state.get("dialog"):
            raise NotebookError(f"a dialog blocks {name}: {state['dialog']!r}\n{server.log_tail(25)}")
        if state.get("stage") == "kernel" and state.get("status") == "idle":
            return nb
        time.sleep(0.25)
    raise NotebookError(
        f"{name} did not open with an idle kernel within {timeout:.0f} s (last state {state}):\n{server.log_tail(25)}"
    )


@contextlib.contextmanager
def setup_checks(tab: Tab, label: str) -> Iterator[None]:
    """A failed setup step (an assertion, a notebook error) becomes a ``NotebookError`` that carries a
    screenshot of the page and its console errors; other exceptions pass unchanged, after the screenshot."""
    try:
        yield
    except BaseException as err:
        report = tab.failure_report(f"{label}-setup")
        if isinstance(err, (AssertionError, NotebookError)):
            raise NotebookError(f"{err}\n{report}") from None
        raise


@contextlib.contextmanager
def running_notebook(
    server: LabServer,
    browser: Any,
    name: str,
    cells: Iterable[str],
    *,
    viewport: tuple[int, int] = (1400, 1000),
    scale: float = 1.0,
) -> Iterator[tuple[Tab, OpenNotebook]]:
    """Write ``cells`` as notebook ``name``, open it in a new tab, run every cell, and yield the tab and
    the open notebook; afterwards shut its kernel down and close the tab. Wrap the test's own setup waits
    in :func:`setup_checks` so a failure there reports what the page showed."""
    write_notebook(server.root, name, cells)
    tab = Tab.open(browser, viewport=viewport, scale=scale)
    try:
        with setup_checks(tab, name):
            nb = open_notebook(server, tab.page, name)
            nb.run_all()
        yield tab, nb
    finally:
        server.shutdown_sessions(name)
        tab.close()


def poll(
    get: Callable[[], Any],
    until: Callable[[Any], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> Any:
    """Call ``get`` until ``until(value)`` holds and return that value; else fail after ``timeout`` s,
    saying what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        last = get()
        if until(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Browser tabs
# ------------------------------------------------------------------------------------------------

FAILURE_DIR = Path(os.environ.get("NEURONWIDGETS_BROWSER_ARTIFACTS") or Path("/tmp") / "nw-browser-failures")


@dataclass
class Tab:
    """A page in its own browser context, with what it logged: console errors, uncaught exceptions and
    dialogs (each dialog is recorded and dismissed so it never blocks the page)."""

    page: Any  # playwright.sync_api.Page
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, viewport: tuple[int, int] = (1400, 1000), scale: float = 1.0) -> Tab:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale
        )
        context.set_default_timeout(30_000)
        tab = cls(context.new_page())
        tab.page.on(
            "console",
            lambda m: tab.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
        )
        tab.page.on("pageerror", lambda e: tab.console.append(f"uncaught: {e}"))

        def on_dialog(dialog: Any) -> None:
            tab.dialogs.append(f"{dialog.type}: {dialog.message}")
            with contextlib.suppress(Exception):  # the page may be closing
                dialog.dismiss()

        tab.page.on("dialog", on_dialog)
        return tab

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed with the browser
            self.page.context.close()

    def failure_report(self, label: str) -> str:
        """Save a full-page screenshot for a failure; return its path and the page's console errors."""
        FAILURE_DIR.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^\w.-]+", "_", label)[:120]
        path = FAILURE_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}.png"
        try:
            self.page.screenshot(path=str(path), full_page=True, timeout=15_000)
            where = f"screenshot: {path}"
        except Exception as err:
            where = f"screenshot failed: {err}"
        lines = [where]
        if self.console:
            lines.append("browser console (errors/warnings, last 30):\n" + "\n".join(self.console[-30:]))
        if self.dialogs:
            lines.append("dialogs: " + "; ".join(self.dialogs))
        return "\n".join(lines)
