"""Lint widget code for Colab's ipywidgets 7: no 8-only API, no third-party widget front ends."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from tools.notebook_source import imported_modules, python_source

# ipywidgets 8-only API (Colab has ipywidgets 7): widgets, and traits/keywords
IPYWIDGETS8_ONLY_WIDGETS = {
    "TagsInput",
    "ColorsInput",
    "FloatsInput",
    "IntsInput",
    "Stack",
    "DatetimePicker",
    "NaiveDatetimePicker",
    "TimePicker",
}
IPYWIDGETS8_ONLY_TRAITS = {
    "tooltip",
    "description_allow_html",
    "titles",
    "text_color",
    "font_size",
    "font_weight",
    "font_style",
    "font_variant",
    "text_decoration",
}
# widget libraries that need their own front-end extension (absent on Colab and Binder)
THIRD_PARTY_WIDGETS = {
    "ipympl",
    "bqplot",
    "ipycanvas",
    "ipyvolume",
    "ipyleaflet",
    "ipyevents",
    "ipydatawidgets",
    "pythreejs",
    "ipyvuetify",
    "ipyvue",
    "anywidget",
    "ipyfilechooser",
    "ipyaggrid",
    "qgrid",
    "jupyter_bbox_widget",
    "plotly",
    "ipydatagrid",
}
_MATPLOTLIB_WIDGET = re.compile(r"run_line_magic\('matplotlib', '(widget|ipympl|notebook)'\)")


def _ipywidgets_names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the ipywidgets module, and widget classes imported by name."""
    aliases, imported = {"ipywidgets"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname or a.name for a in node.names if a.name.startswith("ipywidgets"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ipywidgets"):
            for a in node.names:
                (aliases if a.name == "widgets" else imported).add(a.asname or a.name)
    return aliases, imported


def _eight_only_keywords(call: ast.Call) -> Iterator[str]:
    """8-only traits passed to a widget constructor, directly or in its ``style`` dict."""
    for kw in call.keywords:
        if kw.arg in IPYWIDGETS8_ONLY_TRAITS:
            yield kw.arg
        if kw.arg == "style" and isinstance(kw.value, ast.Dict):
            yield from (
                k.value
                for k in kw.value.keys
                if isinstance(k, ast.Constant) and k.value in IPYWIDGETS8_ONLY_TRAITS
            )


def ipywidgets8_only_uses(tree: ast.AST) -> Iterator[str]:
    """ipywidgets 8-only widgets, and 8-only traits passed to (or set on) a widget.

    Parameters
    ----------
    tree : ast.AST
        Parsed Python source.

    Yields
    ------
    str
        The name of each 8-only widget or trait used.
    """
    aliases, imported = _ipywidgets_names(tree)
    yield from sorted(imported & IPYWIDGETS8_ONLY_WIDGETS)

    def is_widget_class(func) -> bool:
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            return func.value.id in aliases
        return isinstance(func, ast.Name) and func.id in imported

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr in IPYWIDGETS8_ONLY_WIDGETS
        ):
            yield node.attr
        elif isinstance(node, ast.Call) and is_widget_class(node.func):
            yield from _eight_only_keywords(node)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and node.attr in {"tooltip", "description_allow_html"}
        ):
            yield node.attr


def colab_widget_problems(where: str, source: str) -> list[str]:
    """Everything in one cell or module that would not work with Colab's ipywidgets 7.

    Parameters
    ----------
    where : str
        Name used in the messages (notebook or file).
    source : str
        Cell source (IPython syntax allowed) or module source.

    Returns
    -------
    list of str
        One message per problem; empty when the source is fine.
    """
    code = python_source(source)
    found = []
    if _MATPLOTLIB_WIDGET.search(code):
        found.append(f"{where}: %matplotlib widget/ipympl needs a front-end extension")
    tree = ast.parse(code)
    for module in sorted(imported_modules(tree) & THIRD_PARTY_WIDGETS):
        found.append(f"{where}: imports {module} (third-party widget extension)")
    for name in ipywidgets8_only_uses(tree):
        found.append(f"{where}: `{name}` is ipywidgets 8 only (Colab has 7)")
    return found
