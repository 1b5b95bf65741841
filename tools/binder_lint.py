"""Lint binder/requirements.txt: pins, the torch/torchvision pair, modules the notebooks import.

Binder builds a fresh image per commit from binder/requirements.txt, so a wrong torch/torchvision
pair or a module nobody listed fails every student at once; these helpers catch that without
building the image.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.notebook_source import code_cells, imported_modules, python_source

# torch/torchvision release pairs (PyTorch's compatibility table: each torchvision wheel pins
# exactly one torch). Add a row when moving Binder to a newer pair.
TORCH_FOR_TORCHVISION = {
    "0.16.0": "2.1.0",
    "0.16.1": "2.1.1",
    "0.16.2": "2.1.2",
    "0.17.0": "2.2.0",
    "0.17.1": "2.2.1",
    "0.17.2": "2.2.2",
    "0.18.0": "2.3.0",
    "0.18.1": "2.3.1",
    "0.19.0": "2.4.0",
    "0.19.1": "2.4.1",
    "0.20.0": "2.5.0",
    "0.20.1": "2.5.1",
    "0.21.0": "2.6.0",
    "0.22.0": "2.7.0",
    "0.22.1": "2.7.1",
    "0.23.0": "2.8.0",
    "0.24.0": "2.9.0",
    "0.24.1": "2.9.1",
    "0.28.0": "2.13.0",
    "0.29.0": "2.14.0",
    "0.29.1": "2.14.1",
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


def parse_requirements(path: Path) -> tuple[list[str], dict[str, Requirement], list[str]]:
    """Read a pip requirements file.

    Returns
    -------
    options : list of str
        Option lines (``--extra-index-url ...``).
    reqs : dict
        Canonical distribution name -> ``Requirement``.
    local : list of str
        Local paths (``.``, ``-e ./x``).
    """
    options, reqs, local = [], {}, []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
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
    """The version of an ``==`` pin; AssertionError if ``req`` is not exactly one ``==``."""
    specs = list(req.specifier)
    assert len(specs) == 1 and specs[0].operator == "==", f"{req} is not pinned with =="
    return specs[0].version


def torchvision_pair_problem(torch: str, vision: str) -> str | None:
    """Why ``torch`` and ``torchvision`` (release versions, no ``+cpu``) do not go together."""
    if vision not in TORCH_FOR_TORCHVISION:
        return f"torchvision {vision} is not in tools/binder_lint.py's TORCH_FOR_TORCHVISION"
    if TORCH_FOR_TORCHVISION[vision] != torch:
        return f"torchvision {vision} needs torch {TORCH_FOR_TORCHVISION[vision]}, not {torch}"
    return None


def distribution_of(module: str) -> str:
    """Canonical name of the distribution that provides the top-level ``module``."""
    if module in DISTRIBUTION_OF:
        return canonicalize_name(DISTRIBUTION_OF[module])
    dists = metadata.packages_distributions().get(module)
    return canonicalize_name(dists[0] if dists else module)


def unlisted_imports(nb_path: Path, listed: set[str]) -> list[str]:
    """Modules a notebook imports that no listed distribution provides.

    Parameters
    ----------
    nb_path : Path
        The notebook.
    listed : set of str
        Canonical names of the distributions the requirements file lists.

    Returns
    -------
    list of str
        ``"module (distribution name)"`` for each unprovided import, sorted per cell.
    """
    stdlib = set(sys.stdlib_module_names)
    missing = []
    for source in code_cells(nb_path):
        for module in sorted(imported_modules(ast.parse(python_source(source)))):
            if module in stdlib or module == "deconvlab":
                continue
            dist = distribution_of(module)
            if dist not in listed and IMPLIED_BY.get(dist) not in listed:
                missing.append(f"{module} (distribution {dist})")
    return missing
