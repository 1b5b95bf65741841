"""The launch files stay consistent: Binder's environment (binder/), the Colab first cell of every
notebook, and the README badges that open both.

Binder builds a fresh image per commit from binder/requirements.txt (+ postBuild), so a wrong
torch/torchvision pair, a module the notebooks import but nobody listed, or a broken postBuild
fails every student at once; these checks catch that without building the image.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info < (3, 11):  # tomllib, sys.stdlib_module_names
    pytest.skip("the launch-file checks need Python 3.11+", allow_module_level=True)

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tools import binder_lint
from tools.binder_lint import pinned_version
from tools.colab_cell import COLAB_CELL, GITHUB, installs_deconvlab, run_colab_cell
from tools.ipywidgets7_lint import colab_widget_problems, ipywidgets8_only_uses
from tools.notebook_source import code_cells

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
REQUIREMENTS = BINDER / "requirements.txt"
POSTBUILD = BINDER / "postBuild"
OVERRIDES = BINDER / "overrides.json"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def parse_requirements():
    """binder/requirements.txt: (options, {name: Requirement}, local paths)."""
    return binder_lint.parse_requirements(REQUIREMENTS)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# binder/requirements.txt
# --------------------------------------------------------------------------------------------


def test_cpu_only_torch_from_pytorch_index():
    options, reqs, _ = parse_requirements()
    assert f"--extra-index-url {CPU_INDEX}" in options or f"--index-url {CPU_INDEX}" in options
    for name in ("torch", "torchvision"):
        assert name in reqs, f"binder/requirements.txt must pin {name}"
        version = pinned_version(reqs[name])
        assert version.endswith("+cpu"), f"{name}=={version}: use the CPU-only '+cpu' wheel"


def test_torch_torchvision_pair_matches():
    _, reqs, _ = parse_requirements()
    torch = pinned_version(reqs["torch"]).removesuffix("+cpu")
    vision = pinned_version(reqs["torchvision"]).removesuffix("+cpu")
    assert binder_lint.torchvision_pair_problem(torch, vision) is None, binder_lint.torchvision_pair_problem(
        torch, vision
    )


def test_readme_laptop_install_uses_the_cpu_index_and_names_binders_pair():
    """The README's CPU-only laptop command and Binder stay in step (issue 12, item 9)."""
    _, reqs, _ = parse_requirements()
    text = (REPO / "README.md").read_text(encoding="utf-8")
    laptop = re.search(r"```sh\n(.*?)\n```", text, flags=re.S)
    assert laptop, "README needs the CPU-only laptop install (a ```sh block) beside the first command"
    command = laptop.group(1)
    assert f"pip install torch torchvision --index-url {CPU_INDEX}" in command
    assert 'pip install -e ".[lab]"' in command and "jupyter lab" in command
    torch = pinned_version(reqs["torch"]).removesuffix("+cpu")
    vision = pinned_version(reqs["torchvision"]).removesuffix("+cpu")
    assert f"torch {torch} and torchvision {vision}" in text, "README must name Binder's CPU pair"


def test_the_pair_check_sees_a_mismatch():
    assert binder_lint.torchvision_pair_problem("2.8.0", "0.23.0") is None
    assert "needs torch 2.8.0" in binder_lint.torchvision_pair_problem("2.7.0", "0.23.0")
    assert "TORCH_FOR_TORCHVISION" in binder_lint.torchvision_pair_problem("2.7.0", "9.9.9")


def test_front_end_pins():
    _, reqs, _ = parse_requirements()
    assert Version(pinned_version(reqs["jupyterlab"])).major == 4
    assert Version(pinned_version(reqs["ipywidgets"])).major == 8
    if "jupyterlab-widgets" in reqs:  # ipywidgets 8 <-> jupyterlab_widgets 3
        assert Version(pinned_version(reqs["jupyterlab-widgets"])).major == 3


def test_everything_pinned_and_package_installed_from_checkout():
    _, reqs, local = parse_requirements()
    for req in reqs.values():
        pinned_version(req)
    assert local in (["."], ["./"]), "install the package itself from the checkout: a '.' line"


def test_pins_satisfy_the_package_lower_bounds():
    _, reqs, _ = parse_requirements()
    for dep in pyproject()["project"]["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        if name in reqs:
            pinned = Version(pinned_version(reqs[name]))
            assert req.specifier.contains(pinned, prereleases=True), (
                f"binder pins {name}=={pinned}, but pyproject.toml asks for {req}"
            )


def test_pins_live_only_in_binder():
    """pyproject.toml (and any other requirements file) gives lower bounds only."""
    project = pyproject()["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps.extend(extra)
    others = [
        p for p in REPO.rglob("requirements*.txt") if BINDER not in p.parents and ".venv" not in p.parts
    ]
    for path in others:
        deps.extend(
            line.split("#", 1)[0].strip()
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.split("#", 1)[0].strip() and not line.lstrip().startswith("-")
        )
    for dep in deps:
        req = Requirement(dep)
        ops = {spec.operator for spec in req.specifier}
        assert ops <= {">=", "!="}, f"{dep}: outside binder/ give lower bounds (>=) only"


def test_runtime_is_a_python_3_version():
    runtime = BINDER / "runtime.txt"
    if runtime.exists():
        assert re.fullmatch(r"python-3\.\d+", runtime.read_text(encoding="utf-8").strip())


# --------------------------------------------------------------------------------------------
# postBuild and JupyterLab settings
# --------------------------------------------------------------------------------------------


def test_postbuild_is_strict_and_executable():
    if not POSTBUILD.exists():
        pytest.skip("no binder/postBuild")
    assert os.access(POSTBUILD, os.X_OK), "binder/postBuild must be executable (chmod +x)"
    lines = [
        line.strip()
        for line in POSTBUILD.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert POSTBUILD.read_text(encoding="utf-8").startswith("#!/bin/bash\n")
    assert lines[0] == "set -e", "binder/postBuild must start with `set -e`"
    subprocess.run(["bash", "-n", str(POSTBUILD)], check=True)


def test_postbuild_installs_the_lab_settings():
    text = POSTBUILD.read_text(encoding="utf-8")
    assert "binder/overrides.json" in text
    assert "${NB_PYTHON_PREFIX}/share/jupyter/lab/settings" in text


def test_overrides_turn_off_news_and_match_the_schemas():
    overrides = json.loads(OVERRIDES.read_text(encoding="utf-8"))
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification["fetchNews"] == "false"
    assert notification.get("checkForUpdates") is False

    jsonschema = pytest.importorskip("jsonschema")
    share = Path(sys.prefix) / "share" / "jupyter"
    for plugin, settings in overrides.items():
        package, name = plugin.split(":")
        candidates = [
            share / "lab" / "schemas" / package / f"{name}.json",
            share / "labextensions" / package / "schemas" / package / f"{name}.json",
        ]
        schema_path = next((p for p in candidates if p.exists()), None)
        assert schema_path, f"no JupyterLab plugin {plugin} (schema not found)"
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        jsonschema.validate(settings, schema)


# --------------------------------------------------------------------------------------------
# the notebooks: imports, Colab first cell, nothing ipywidgets-8-only
# --------------------------------------------------------------------------------------------


def unlisted_imports(nb_path: Path) -> list[str]:
    """Modules a notebook imports that binder/requirements.txt does not provide."""
    _, reqs, _ = parse_requirements()
    return binder_lint.unlisted_imports(nb_path, set(reqs))


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_are_listed(nb_path):
    missing = unlisted_imports(nb_path)
    assert not missing, f"{nb_path.name} imports modules binder/requirements.txt lacks: {missing}"


def test_the_import_check_sees_unlisted_modules(tmp_path):
    cells = [
        "import os\nimport numpy as np\nfrom PIL import Image\nfrom IPython.display import display",
        "%matplotlib inline\nimport seaborn\nfrom sklearn.metrics import auc\nimport deconvlab",
    ]
    nb = {"cells": [{"cell_type": "code", "source": c} for c in cells], "metadata": {}}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert unlisted_imports(path) == ["seaborn (distribution seaborn)", "sklearn (distribution scikit-learn)"]


def test_colab_cell_does_nothing_outside_colab():
    assert run_colab_cell(COLAB_CELL, on_colab=False) == []


def test_colab_cell_installs_deconvlab_on_colab():
    calls = run_colab_cell(COLAB_CELL, on_colab=True)
    assert len(calls) == 1 and installs_deconvlab(calls[0]), calls


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_the_colab_cell(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    first = nb["cells"][0] if nb["cells"] else {"cell_type": "none", "source": ""}
    assert first["cell_type"] == "code", f"{nb_path.name}: the first cell must be the Colab cell"
    source = "".join(first["source"]) if isinstance(first["source"], list) else first["source"]
    assert run_colab_cell(source, on_colab=False) == [], (
        f"{nb_path.name}: the first cell must do nothing outside Colab"
    )
    calls = run_colab_cell(source, on_colab=True)
    assert any(installs_deconvlab(c) for c in calls), (
        f"{nb_path.name}: on Colab the first cell must pip-install deconvlab from {GITHUB}: {calls}"
    )


def _widget_sources():
    sources = [(p.name, src) for p in NOTEBOOKS for src in code_cells(p)]
    for path in sorted((REPO / "deconvlab").rglob("*.py")):
        if "widget" in str(path.relative_to(REPO / "deconvlab")):
            sources.append((str(path.relative_to(REPO)), path.read_text(encoding="utf-8")))
    return sources


def test_no_ipywidgets8_only_features_or_third_party_widgets():
    found = [
        problem for where, source in _widget_sources() for problem in colab_widget_problems(where, source)
    ]
    assert not found, "\n".join(found)


def test_the_ipywidgets8_check_sees_8_only_features():
    source = """
import ipywidgets as w
from ipywidgets import TagsInput, IntSlider
w.Stack([])
IntSlider(tooltip="x")
w.Label("a", style={"font_weight": "bold"})
w.Tab(titles=["a"])
s = IntSlider(); s.description_allow_html = True
figure(titles=["not a widget"])
"""
    found = list(ipywidgets8_only_uses(ast.parse(source)))
    assert sorted(found) == sorted(
        ["TagsInput", "Stack", "tooltip", "font_weight", "titles", "description_allow_html"]
    )


# --------------------------------------------------------------------------------------------
# README badges
# --------------------------------------------------------------------------------------------


def test_readme_has_binder_and_colab_badges():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    binder = (
        "https://mybinder.org/v2/gh/deconvlab/deconvlab/main"
        "?urlpath=lab/tree/notebooks/01_relu_backward_rules.ipynb"
    )
    assert binder in text, "README needs the Binder badge that opens notebook 01 in JupyterLab"
    for nb_path in NOTEBOOKS:
        colab = (
            f"https://colab.research.google.com/github/deconvlab/deconvlab/blob/main/notebooks/{nb_path.name}"
        )
        assert colab in text, f"README needs an 'Open in Colab' badge for {nb_path.name}"
