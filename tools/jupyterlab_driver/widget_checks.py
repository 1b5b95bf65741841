"""Did a widget output render as a working widget? Pure checks on an output's HTML.

The page scripts send, for each widget output of a notebook, the ``data-mime-type`` of its
output element (set when JupyterLab fell back to another renderer, e.g. ``text/plain``) and its
inner HTML. These functions decide from that alone, so they are testable without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

# What ipywidgets shows instead of a widget: "Error displaying widget[: model not found]" (the
# view failed), or an ErrorWidgetView box, "Click to show javascript error." (the model's module
# could not be loaded, e.g. an ipywidgets 7 kernel with the ipywidgets 8 front end).
ERROR_TEXTS = ("error displaying widget", "javascript error")
ERROR_CLASSES = {"jupyter-widgets-error-widget", "widget-error"}
LOADING_TEXT = "Loading widget..."
SLIDER_CLASS = "widget-slider"  # the root of every slider view, ipywidgets 7 and 8
STDERR_MIME = "application/vnd.jupyter.stderr"
TRACEBACK = "Traceback (most recent call last)"
_VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}


@dataclass
class OutputFacts:
    """What an output's HTML contains."""

    classes: set[str] = field(default_factory=set)
    text: str = ""
    sliders: int = 0
    widget_tracebacks: list[str] = field(default_factory=list)


class _FactsParser(HTMLParser):
    """Collects ``OutputFacts``; tracks, per open element, whether it is inside an Output
    widget and inside a stderr output there."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.facts = OutputFacts()
        self._stack: list[tuple[bool, bool]] = []  # (in an Output widget, in its stderr)
        self._text: list[str] = []
        self._stderr: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        self.facts.classes |= classes
        self.facts.sliders += SLIDER_CLASS in classes
        in_output, in_stderr = self._stack[-1] if self._stack else (False, False)
        in_output = in_output or "widget-output" in classes
        if in_output and not in_stderr and attrs.get("data-mime-type") == STDERR_MIME:
            in_stderr, self._stderr = True, []
        if tag not in _VOID:
            self._stack.append((in_output, in_stderr))

    def handle_endtag(self, tag):
        if tag in _VOID or not self._stack:
            return
        _, in_stderr = self._stack.pop()
        if in_stderr and not (self._stack and self._stack[-1][1]):  # a stderr output ends
            text = "".join(self._stderr).strip()
            if TRACEBACK in text:
                self.facts.widget_tracebacks.append(text)

    def handle_data(self, data):
        self._text.append(data)
        if self._stack and self._stack[-1][1]:
            self._stderr.append(data)

    def close(self):
        super().close()
        self.facts.text = " ".join(" ".join(self._text).split())


def output_facts(html: str) -> OutputFacts:
    """Parse an output element's inner HTML into ``OutputFacts``."""
    parser = _FactsParser()
    parser.feed(html)
    parser.close()
    return parser.facts


def is_transient(mime: str | None, html: str | None) -> bool:
    """Whether the output may still become a widget view (no element yet, "Loading widget...",
    nothing rendered yet); a fallback renderer (``mime``) is final."""
    if html is None:
        return True
    if mime is not None:
        return False
    facts = output_facts(html)
    return facts.text == LOADING_TEXT or not (facts.text or "jupyter-widgets" in facts.classes)


def output_problems(mime: str | None, html: str | None) -> list[str]:
    """Why a widget output is not a working widget; empty when it is.

    Parameters
    ----------
    mime : str or None
        The output element's ``data-mime-type``: None when the widget renderer drew it, a MIME
        type (``text/plain``, ...) when JupyterLab fell back to another renderer.
    html : str or None
        The output element's inner HTML; None when the output has no element at all.

    Returns
    -------
    list of str
        One message per problem: no view, a fallback renderer, "Loading widget...", an error
        box or error text, a traceback inside an Output widget.
    """
    if html is None:
        return ["no output element (the cell was never rendered)"]
    facts = output_facts(html)
    shown = f'"{facts.text[:120]}"'
    if mime is not None:
        return [f"shown as {mime}, not as a widget: {shown}"]
    lowered = facts.text.lower()
    if facts.classes & ERROR_CLASSES or any(t in lowered for t in ERROR_TEXTS):
        problems = [f"widget error box: {shown}"]
    elif facts.text == LOADING_TEXT:
        problems = [f"still {shown}"]
    elif "jupyter-widgets" not in facts.classes:
        problems = [f"no widget view: {shown}"]
    else:
        problems = []
    problems.extend(f"traceback in an Output widget: {t[-400:]}" for t in facts.widget_tracebacks)
    return problems


def slider_shortfall(built: list[str], rendered: int) -> str | None:
    """A message when fewer slider views rendered than the kernel built sliders, else None.

    Parameters
    ----------
    built : list of str
        Class names of the slider widgets alive in the kernel (``kernel_query``).
    rendered : int
        Slider views found in the notebook's widget outputs.
    """
    if rendered >= len(built):
        return None
    kinds = ", ".join(f"{built.count(k)} {k}" for k in sorted(set(built)))
    return (
        f"the kernel built {len(built)} slider(s) ({kinds}) but {rendered} rendered: "
        "a slider the student cannot see or move"
    )
