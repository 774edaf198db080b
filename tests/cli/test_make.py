"""`make dev` / `make test` check the Python first: too old is one clear line, and a .venv
made by another Python is rebuilt instead of failing on a pinned package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from processes import ROOT


def check_python() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_python",
                                                  ROOT / "scripts" / "check_python.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_check(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "check-python", f"PYTHON={sys.executable}",
                           f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_an_old_python_is_named() -> None:
    module = check_python()
    assert module.too_old((3, 10, 13)) == ("Python >= 3.11 needed, found 3.10 "
                                           "(run: make dev PYTHON=python3.11)")
    assert module.too_old((3, 11, 0)) is None and module.too_old((3, 13, 1)) is None


def test_a_venv_of_another_python_is_rebuilt(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.13\n")
    result = make_check(venv)
    assert result.returncode == 0, result.stderr
    assert f"Rebuilding {venv}: {venv} was made by Python 3.10" in result.stderr
    assert not venv.exists()


def test_a_venv_of_this_python_is_kept(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    result = make_check(venv)
    assert result.returncode == 0 and result.stderr == ""
    assert (venv / "bin" / "python").exists()
