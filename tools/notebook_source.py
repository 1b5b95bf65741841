"""Notebook code as Python: code cells, IPython syntax transformed away, imported modules."""

from __future__ import annotations

import ast
import json
from pathlib import Path


def code_cells(nb_path: Path) -> list[str]:
    """Source of each code cell of a notebook.

    Parameters
    ----------
    nb_path : Path
        An ``.ipynb`` file.

    Returns
    -------
    list of str
        One string per code cell, in order.
    """
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def python_source(cell_source: str) -> str:
    """A code cell as plain Python: IPython magics become ``get_ipython()`` calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell_source)


def imported_modules(tree: ast.AST) -> set[str]:
    """Top-level names of the modules imported (absolutely) anywhere in ``tree``."""
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods
