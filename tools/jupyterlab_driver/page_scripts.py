"""The JavaScript the driver runs in the JupyterLab page (``js/*.js``), for ``page.evaluate``.

Each script is an arrow function taking the notebook's path (and more, as a list); the shared
helpers of ``js/find_panel.js`` are prepended.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

JS_DIR = Path(__file__).with_name("js")


@cache
def script(name: str) -> str:
    """The page script ``js/<name>.js``, with the ``findPanel`` / ``kernelOf`` helpers."""
    helpers = (JS_DIR / "find_panel.js").read_text(encoding="utf-8")
    return helpers + "\n" + (JS_DIR / f"{name}.js").read_text(encoding="utf-8")
