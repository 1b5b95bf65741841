"""A real package: version, license, lower-bound dependencies, and the README's two commands."""

import re
import subprocess
from pathlib import Path

import tomllib

import deconvlab as dl

REPO = Path(__file__).resolve().parents[1]


def test_version_and_license():
    assert re.fullmatch(r"\d+\.\d+\.\d+", dl.__version__)
    assert (REPO / "LICENSE").read_text().startswith("BSD 3-Clause License")


def test_dependencies_have_lower_bounds_only():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    for requirement in declared:
        assert ">=" in requirement and "==" not in requirement and "<" not in requirement, requirement
    names = {re.split(r"[<>=\[ ]", d)[0].lower() for d in project["dependencies"]}
    assert {"torch", "torchvision", "ipywidgets", "matplotlib", "numpy", "scipy", "scikit-image", "safetensors"} <= names
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
    extracted = subprocess.run(["awk", awk, "README.md"], cwd=REPO, capture_output=True, text=True, check=True)
    assert extracted.stdout.strip() == _code_blocks((REPO / "README.md").read_text())[1]
    assert "rm -rf .venv" in ci and 'bash -c "$test_command"' in ci
