"""pyproject.toml agrees with what it mirrors: the version, requirements*.txt, the noqa codes in the code;
and it is pytest's only configuration."""

import re
from pathlib import Path

import pytest

import segdemo

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parent.parent
NOQA = re.compile(r"#\s*noqa:\s*([A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)")
LINTED = ("app.py", "segdemo", "tests", "bench", "examples")


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_lines(name):
    """The requirement lines of a requirements file, comments (whole-line and trailing) removed."""
    lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in (ROOT / name).read_text().splitlines())
    return [line for line in lines if line]


def test_version_is_the_package_version():
    assert pyproject()["project"]["version"] == segdemo.__version__


def test_dependencies_are_the_requirements_files():
    project = pyproject()["project"]
    assert project["dependencies"] == requirement_lines("requirements.txt")
    assert project["optional-dependencies"]["dev"] == requirement_lines("requirements-dev.txt")
    assert "tensorflow-cpu==2.21.0" in project["dependencies"]  # the parser did not drop real lines


def test_pytest_reads_its_configuration_from_pyproject(request):
    assert not (ROOT / "pytest.ini").exists() and not (ROOT / "setup.cfg").exists()
    assert request.config.inipath == ROOT / "pyproject.toml"
    assert any(marker.startswith("slow:") for marker in request.config.getini("markers"))


def python_files():
    for entry in LINTED:
        path = ROOT / entry
        yield from (sorted(path.rglob("*.py")) if path.is_dir() else [path])


def test_every_noqa_code_names_a_rule_ruff_checks():
    lint = pyproject()["tool"]["ruff"]["lint"]
    codes = {code.strip() for file in python_files() for match in NOQA.finditer(file.read_text())
             for code in match.group(1).split(",")}
    assert {"E402", "BLE001"} <= codes
    unchecked = [code for code in codes if not any(code.startswith(prefix) for prefix in lint["select"])]
    assert not unchecked, f"noqa codes for rules ruff does not select: {unchecked}"
    assert not set(lint.get("ignore", [])) & codes
