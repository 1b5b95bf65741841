"""The launch files stay consistent: Binder's environment (binder/), the Colab first cell of every
notebook, and the README badges that open both.

Binder builds a fresh image per commit from binder/requirements.txt (+ postBuild), so a wrong
torch/torchvision pair, a module the notebooks import but nobody listed, or a broken postBuild
fails every student at once; these checks catch that without building the image.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from unittest import mock

import pytest

if sys.version_info < (3, 11):  # tomllib, sys.stdlib_module_names
    pytest.skip("the launch-file checks need Python 3.11+", allow_module_level=True)

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
REQUIREMENTS = BINDER / "requirements.txt"
POSTBUILD = BINDER / "postBuild"
OVERRIDES = BINDER / "overrides.json"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
GITHUB = "https://github.com/deconvlab/deconvlab"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# torch/torchvision release pairs (PyTorch's compatibility table: each torchvision wheel pins
# exactly one torch). Add a row when moving Binder to a newer pair.
TORCH_FOR_TORCHVISION = {
    "0.16.0": "2.1.0", "0.16.1": "2.1.1", "0.16.2": "2.1.2",
    "0.17.0": "2.2.0", "0.17.1": "2.2.1", "0.17.2": "2.2.2",
    "0.18.0": "2.3.0", "0.18.1": "2.3.1",
    "0.19.0": "2.4.0", "0.19.1": "2.4.1",
    "0.20.0": "2.5.0", "0.20.1": "2.5.1",
    "0.21.0": "2.6.0",
    "0.22.0": "2.7.0", "0.22.1": "2.7.1",
    "0.23.0": "2.8.0",
    "0.24.0": "2.9.0", "0.24.1": "2.9.1",
    "0.28.0": "2.13.0",
}

# import name -> distribution, for modules whose distribution has another name
DISTRIBUTION_OF = {
    "PIL": "pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "cv2": "opencv-python-headless",
    "IPython": "ipython",
    "mpl_toolkits": "matplotlib",
}
# distributions that a listed requirement always brings along
IMPLIED_BY = {
    "ipython": "ipykernel",
    "traitlets": "ipywidgets",
    "matplotlib-inline": "ipykernel",
    "pillow": "matplotlib",
}

# ipywidgets 8-only API (Colab has ipywidgets 7): widgets, and traits/keywords
IPYWIDGETS8_ONLY_WIDGETS = {
    "TagsInput", "ColorsInput", "FloatsInput", "IntsInput", "Stack",
    "DatetimePicker", "NaiveDatetimePicker", "TimePicker",
}
IPYWIDGETS8_ONLY_TRAITS = {
    "tooltip", "description_allow_html", "titles",
    "text_color", "font_size", "font_weight", "font_style", "font_variant", "text_decoration",
}
# widget libraries that need their own front-end extension (absent on Colab and Binder)
THIRD_PARTY_WIDGETS = {
    "ipympl", "bqplot", "ipycanvas", "ipyvolume", "ipyleaflet", "ipyevents", "ipydatawidgets",
    "pythreejs", "ipyvuetify", "ipyvue", "anywidget", "ipyfilechooser", "ipyaggrid", "qgrid",
    "jupyter_bbox_widget", "plotly", "ipydatagrid",
}

# The first cell of every notebook; kept in sync with tests/browser/test_notebooks_in_browser.py.
COLAB_CELL = """\
# On Google Colab, install deconvlab first (this cell does nothing anywhere else).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "deconvlab @ git+https://github.com/deconvlab/deconvlab"], check=True)
"""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def parse_requirements(path: Path = REQUIREMENTS):
    """-> (options, {canonical name: Requirement}, local paths)"""
    options, reqs, local = [], {}, []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-e "):
            local.append(line[3:].strip())
        elif line.startswith("-"):
            options.append(line)
        elif line.startswith((".", "/")):
            local.append(line)
        else:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return options, reqs, local


def pinned_version(req: Requirement) -> str:
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
    return specs[0].version


def python_source(cell_source: str) -> str:
    """A code cell as plain Python (IPython magics become get_ipython() calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def code_cells(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            src = cell["source"]
            cells.append("".join(src) if isinstance(src, list) else src)
    return cells


def imported_modules(tree: ast.AST) -> set[str]:
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods


def distribution_of(module: str) -> str:
    if module in DISTRIBUTION_OF:
        return canonicalize_name(DISTRIBUTION_OF[module])
    dists = metadata.packages_distributions().get(module)
    return canonicalize_name(dists[0] if dists else module)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def run_colab_cell(source: str, on_colab: bool) -> list[tuple]:
    """Execute a first cell with a fake IPython and fake process launchers (nothing is installed,
    nothing touches the network); returns the magics / commands it ran."""
    calls: list[tuple] = []

    class FakeIPython:
        def run_line_magic(self, name, line):
            calls.append(("magic", name, line))

        def run_cell_magic(self, name, line, cell):
            calls.append(("magic", name, line))

        def system(self, cmd):
            calls.append(("command", cmd))

        def getoutput(self, cmd):
            calls.append(("command", cmd))
            return []

    def command(*args, **kwargs):
        cmd = args[0] if args else kwargs.get("args")
        calls.append(("command", cmd if isinstance(cmd, str) else " ".join(map(str, cmd))))
        return subprocess.CompletedProcess(cmd, 0, b"", b"")

    code = compile(python_source(source), "<first cell>", "exec")
    fake_colab = type(sys)("google.colab")
    launchers = [mock.patch.object(subprocess, name, command)
                 for name in ("run", "call", "check_call", "check_output", "Popen")]
    launchers += [mock.patch.object(os, "system", command)]
    with contextlib.ExitStack() as stack:
        for patch in launchers:
            stack.enter_context(patch)
        modules = {"google.colab": fake_colab} if on_colab else {}
        stack.enter_context(mock.patch.dict(sys.modules, modules))
        if not on_colab:
            sys.modules.pop("google.colab", None)
        exec(code, {"get_ipython": FakeIPython, "__name__": "__main__"})
    return calls


def installs_deconvlab(call: tuple) -> bool:
    """A `%pip install ...` or `python -m pip install ...` of deconvlab from GitHub."""
    text = call[-1]
    is_pip = (call[:2] == ("magic", "pip")) or (call[0] == "command" and " pip install" in text)
    return is_pip and f"git+{GITHUB}" in text


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
    assert vision in TORCH_FOR_TORCHVISION, (
        f"torchvision {vision} is not in the known-pairs table of tests/test_binder.py")
    assert TORCH_FOR_TORCHVISION[vision] == torch, (
        f"torchvision {vision} needs torch {TORCH_FOR_TORCHVISION[vision]}, not {torch}")


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
                f"binder pins {name}=={pinned}, but pyproject.toml asks for {req}")


def test_pins_live_only_in_binder():
    """pyproject.toml (and any other requirements file) gives lower bounds only."""
    project = pyproject()["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps.extend(extra)
    others = [
        p for p in REPO.rglob("requirements*.txt")
        if BINDER not in p.parents and ".venv" not in p.parts
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
        line.strip() for line in POSTBUILD.read_text(encoding="utf-8").splitlines()
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
    listed = set(reqs)
    stdlib = set(sys.stdlib_module_names)
    missing = []
    for source in code_cells(nb_path):
        for module in sorted(imported_modules(ast.parse(python_source(source)))):
            if module in stdlib or module == "deconvlab":
                continue
            dist = distribution_of(module)
            if dist in listed or IMPLIED_BY.get(dist) in listed:
                continue
            missing.append(f"{module} (distribution {dist})")
    return missing


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_are_listed(nb_path):
    missing = unlisted_imports(nb_path)
    assert not missing, f"{nb_path.name} imports modules binder/requirements.txt lacks: {missing}"


def test_the_import_check_sees_unlisted_modules(tmp_path):
    cells = ["import os\nimport numpy as np\nfrom PIL import Image\nfrom IPython.display import display",
             "%matplotlib inline\nimport seaborn\nfrom sklearn.metrics import auc\nimport deconvlab"]
    nb = {"cells": [{"cell_type": "code", "source": c} for c in cells], "metadata": {}}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert unlisted_imports(path) == ["seaborn (distribution seaborn)",
                                      "sklearn (distribution scikit-learn)"]


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
        f"{nb_path.name}: the first cell must do nothing outside Colab")
    calls = run_colab_cell(source, on_colab=True)
    assert any(installs_deconvlab(c) for c in calls), (
        f"{nb_path.name}: on Colab the first cell must pip-install deconvlab from {GITHUB}: {calls}")


def _widget_sources():
    sources = [(p.name, src) for p in NOTEBOOKS for src in code_cells(p)]
    for path in sorted((REPO / "deconvlab").rglob("*.py")):
        if "widget" in str(path.relative_to(REPO / "deconvlab")):
            sources.append((str(path.relative_to(REPO)), path.read_text(encoding="utf-8")))
    return sources


def _ipywidgets8_only_uses(tree: ast.AST) -> list[str]:
    """ipywidgets 8-only widgets, and 8-only traits passed to (or set on) a widget."""
    aliases = {"ipywidgets"}  # names bound to the ipywidgets module (or ipywidgets.widgets)
    imported = set()  # widget classes imported by name
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name.startswith("ipywidgets"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ipywidgets"):
            for a in node.names:
                if a.name == "widgets":
                    aliases.add(a.asname or a.name)
                else:
                    imported.add(a.asname or a.name)
                    if a.name in IPYWIDGETS8_ONLY_WIDGETS:
                        yield a.name

    def is_widget_class(func) -> bool:
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            return func.value.id in aliases
        return isinstance(func, ast.Name) and func.id in imported

    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr in IPYWIDGETS8_ONLY_WIDGETS):
            yield node.attr
        elif isinstance(node, ast.Call) and is_widget_class(node.func):
            for kw in node.keywords:
                if kw.arg in IPYWIDGETS8_ONLY_TRAITS:
                    yield kw.arg
                if kw.arg == "style" and isinstance(kw.value, ast.Dict):
                    yield from (k.value for k in kw.value.keys if isinstance(k, ast.Constant)
                                and k.value in IPYWIDGETS8_ONLY_TRAITS)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and node.attr in {"tooltip", "description_allow_html"}):
            yield node.attr


def test_no_ipywidgets8_only_features_or_third_party_widgets():
    found = []
    for where, source in _widget_sources():
        code = python_source(source)
        if re.search(r"run_line_magic\('matplotlib', '(widget|ipympl|notebook)'\)", code):
            found.append(f"{where}: %matplotlib widget/ipympl needs a front-end extension")
        tree = ast.parse(code)
        for module in sorted(imported_modules(tree) & THIRD_PARTY_WIDGETS):
            found.append(f"{where}: imports {module} (third-party widget extension)")
        for name in _ipywidgets8_only_uses(tree):
            found.append(f"{where}: `{name}` is ipywidgets 8 only (Colab has 7)")
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
    found = list(_ipywidgets8_only_uses(ast.parse(source)))
    assert sorted(found) == sorted(["TagsInput", "Stack", "tooltip", "font_weight", "titles",
                                    "description_allow_html"])


# --------------------------------------------------------------------------------------------
# README badges
# --------------------------------------------------------------------------------------------


def test_readme_has_binder_and_colab_badges():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    binder = ("https://mybinder.org/v2/gh/deconvlab/deconvlab/main"
              "?urlpath=lab/tree/notebooks/01_relu_backward_rules.ipynb")
    assert binder in text, "README needs the Binder badge that opens notebook 01 in JupyterLab"
    for nb_path in NOTEBOOKS:
        colab = ("https://colab.research.google.com/github/deconvlab/deconvlab/blob/main/"
                 f"notebooks/{nb_path.name}")
        assert colab in text, f"README needs an 'Open in Colab' badge for {nb_path.name}"
