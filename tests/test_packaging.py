"""A real package: version, license, lower-bound dependencies (run by .ci/lowest), and the README's two commands."""

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11: the same parser, as a package (the test extra installs it)
    import tomli as tomllib

import deconvlab as dl

REPO = Path(__file__).resolve().parents[1]


def test_version_and_license():
    assert re.fullmatch(r"\d+\.\d+\.\d+", dl.__version__)
    assert (REPO / "LICENSE").read_text().startswith("BSD 3-Clause License")


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _declared(project):
    return project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]


def test_dependencies_have_lower_bounds_only():
    project = _project()
    for requirement in _declared(project):
        specifiers = requirement.split(";")[0]  # an environment marker may compare versions
        assert ">=" in specifiers and "==" not in specifiers and "<" not in specifiers, requirement
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert {
        "torch",
        "torchvision",
        "ipywidgets",
        "matplotlib",
        "numpy",
        "scipy",
        "scikit-image",
        "safetensors",
    } <= names
    assert "ipywidgets>=7.7" in project["dependencies"]


def _code_blocks(text):
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)


def test_readme_opens_with_the_lab_command_then_the_test_command():
    blocks = _code_blocks((REPO / "README.md").read_text())
    lab, tests = blocks[0], blocks[1]
    assert "python3 -m venv .venv" in lab and "jupyter lab --ip=127.0.0.1" in lab and "notebooks/" in lab
    assert "python3 -m venv .venv" in tests and tests.endswith("-m pytest")


def test_ci_runs_the_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"test_command=\$\(awk '(.*?)' README.md\)", ci).group(1)
    extracted = subprocess.run(
        ["awk", awk, "README.md"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert extracted.stdout.strip() == _code_blocks((REPO / "README.md").read_text())[1]
    assert "rm -rf .venv" in ci and 'bash -c "$test_command"' in ci


def _lowest_pins(*args):
    return subprocess.run(
        [sys.executable, "tools/lowest_pins.py", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_lowest_pins_are_the_declared_lower_bounds():
    """.ci/lowest installs exactly these: every `>=` bound of pyproject.toml as `==`, nothing else."""
    project = _project()
    oldest = re.fullmatch(r">=\s*(3\.\d+)", project["requires-python"]).group(1)
    assert _lowest_pins("--python").strip() == oldest
    extras = sorted(project["optional-dependencies"])
    pins = [line for line in _lowest_pins(*extras).splitlines() if not line.startswith("#")]
    bounds = {}
    for requirement in _declared(project):
        name, _, bound = requirement.split(";")[0].partition(">=")
        name = re.sub(r"\[.*\]", "", name).strip().lower()
        bounds.setdefault(name, []).append(bound.strip())
    pinned = {
        re.sub(r"[-_.]+", "-", pin.split("==")[0].lower()): pin.split("==")[1].split(";")[0].strip()
        for pin in pins
    }
    assert pinned.keys() == {re.sub(r"[-_.]+", "-", name) for name in bounds}
    for name, declared_bounds in bounds.items():  # the highest, where several extras name a package
        highest = max(declared_bounds, key=lambda v: [int(part) for part in v.split(".")])
        assert pinned[re.sub(r"[-_.]+", "-", name)] == highest, (name, declared_bounds)


def test_ci_runs_the_lowest_versions_without_the_browser_suite():
    ci, lowest = (REPO / ".ci" / "run").read_text(), (REPO / ".ci" / "lowest").read_text()
    assert "bash .ci/lowest" in [line.strip() for line in ci.splitlines()]
    assert "tools/lowest_pins.py --python" in lowest and '-c "$pins"' in lowest
    assert '-m "not browser and not seeds" --ignore=tests/browser' in lowest
