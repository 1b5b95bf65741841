"""Sphinx configuration of the course site: the executed notebooks, the instructor guide and the API.

Build it with ``python -m sphinx -b html docs docs/_build/html`` (README). The notebooks are
the instructor version (:mod:`deconvlab.course.build`), copied into ``_notebooks/`` at the start
of each build and executed by myst-nb. The maths is typeset by MathJax 3, which the
``sphinx-mathjax-offline`` extension copies into the site: nothing is fetched from a CDN.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import deconvlab

HERE = Path(__file__).parent
project = "deconvlab"
author = "deconvlab developers"
copyright = "deconvlab developers, BSD-3-Clause"
release = version = deconvlab.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 (CommonHTML output and its fonts) in _static/mathjax
]
exclude_patterns = ["_build", "_expected_answers.md", "**.ipynb_checkpoints"]
html_theme = "furo"
html_title = f"deconvlab {release}: the course"
html_static_path = ["_static"]

# Notebooks: executed at build time, top to bottom, in a fresh kernel; an error fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
myst_enable_extensions = ["dollarmath", "amsmath"]
nb_render_markdown_format = "myst"
# An explorer's output holds its widget view and a PNG of its current state: a static page shows the
# PNG (the widget view would need a live kernel, or widget scripts from a CDN).
nb_mime_priority_overrides = [("html", "image/png", 5)]
# ...so no widget scripts: myst-nb would load require.js and the widget manager from a CDN, which
# fail offline.
nb_ipywidgets_js: dict = {}

# API reference from the docstrings (NumPy style).
napoleon_numpy_docstring = True
napoleon_google_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"


def _instructor_notebooks() -> None:
    import nbformat

    from deconvlab.course.build import instructor_version

    target = HERE / "_notebooks"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    for path in sorted((HERE.parent / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.write(nbformat.from_dict(instructor_version(notebook, path.name)), target / path.name)


def setup(app) -> None:
    _instructor_notebooks()
