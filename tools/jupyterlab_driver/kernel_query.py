"""Ask the notebook's kernel which slider widgets it built (the expected slider count).

The expression runs as an ``execute_request`` user expression (silent: no cell, no execution
count) after run-all. It lists the class names of the live widgets whose model is a slider
(``IntSlider``, ``FloatSlider``, ``FloatLogSlider``, ``SelectionSlider``, the range sliders):
ipywidgets 8 keeps live widgets in ``ipywidgets.widgets.widget._instances``, ipywidgets 7 in
``Widget.widgets``; a closed widget leaves the registry.
"""

from __future__ import annotations

import ast

SLIDER_EXPRESSION = (
    "(lambda m: [] if m is None else sorted("
    "type(w).__name__ for w in dict(m._instances if hasattr(m, '_instances') else m.Widget.widgets)"
    ".values() if str(getattr(w, '_model_name', '')).endswith('SliderModel')))"
    "(__import__('sys').modules.get('ipywidgets.widgets.widget'))"
)


def sliders_from_reply(reply: dict) -> list[str]:
    """The slider class names from the ``user_expressions`` entry of an execute reply.

    Parameters
    ----------
    reply : dict
        ``{"status": "ok", "data": {"text/plain": "['IntSlider', ...]"}}``, or an error entry
        (``status``, ``ename``, ``evalue``).

    Raises
    ------
    RuntimeError
        When the kernel could not evaluate ``SLIDER_EXPRESSION``.
    """
    if not reply or reply.get("status") != "ok":
        why = f"{reply.get('ename')}: {reply.get('evalue')}" if reply else "no reply"
        raise RuntimeError(f"the kernel could not list its sliders ({why})")
    return list(ast.literal_eval(reply["data"]["text/plain"]))
