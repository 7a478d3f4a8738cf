"""Canary of the browser harness: an inline anywidget whose button round-trips through a real kernel.

Cheap (no model, no bundle), so when it fails the harness or the environment is broken, not a widget.
"""

from __future__ import annotations

import json
import secrets
import textwrap

import pytest

from .harness import LabServer, Tab, open_notebook, poll, write_notebook

ECHO_CELL = '''
import json
import pathlib

import anywidget
import traitlets

SECRET = {secret!r}  # known to Python only: the page can show it only if the kernel answered


class Echo(anywidget.AnyWidget):
    _esm = """
    function render({{ model, el }}) {{
      el.classList.add("nw-canary");
      const button = document.createElement("button");
      button.className = "nw-canary-ask";
      button.textContent = "ask";
      const answer = document.createElement("output");
      answer.className = "nw-canary-answer";
      const show = () => {{ answer.textContent = model.get("answer"); }};
      button.addEventListener("click", () => {{
        model.set("clicks", model.get("clicks") + 1);
        model.save_changes();
      }});
      model.on("change:answer", show);
      show();
      el.append(button, answer);
    }}
    export default {{ render }};
    """
    clicks = traitlets.Int(0).tag(sync=True)
    answer = traitlets.Unicode("").tag(sync=True)

    @traitlets.observe("clicks")
    def _answer(self, change):
        n = change["new"]
        pathlib.Path("canary_state.json").write_text(json.dumps({{"clicks": n}}))
        self.answer = f"{{SECRET}}:{{n}}:{{n * n + 7}}"


echo = Echo()
echo
'''


@pytest.mark.browser
def test_harness_anywidget_roundtrip(lab_server: LabServer, tab: Tab) -> None:
    secret = secrets.token_hex(6)
    name = "canary.ipynb"
    write_notebook(lab_server.root, name, [textwrap.dedent(ECHO_CELL).format(secret=secret)])
    try:
        nb = open_notebook(lab_server, tab.page, name)
        nb.run_all()
        button = nb.wait_for(".nw-canary .nw-canary-ask")
        answer = tab.page.locator(".nw-canary .nw-canary-answer")
        assert answer.text_content() == "", "the answer must come from Python, not be there before the click"

        for n in (1, 2):
            button.click()
            expected = f"{secret}:{n}:{n * n + 7}"
            poll(
                answer.text_content,
                lambda t, e=expected: t == e,
                30,
                what=f"Python's answer {expected!r} in the page",
            )
        state = json.loads((lab_server.root / "canary_state.json").read_text())
        assert state == {"clicks": 2}, "the kernel-side trait did not follow the clicks"
        assert nb.kernel_exec("print(echo.clicks, echo.answer)").strip() == f"2 {secret}:2:11"
        assert not tab.dialogs
    finally:
        lab_server.shutdown_sessions(name)
