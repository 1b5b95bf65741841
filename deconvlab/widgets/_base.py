"""The shape every explorer shares: controls, one picture updated in place, a box to display.

An explorer is a plain object built from library functions, usable without a
notebook: set ``explorer.controls["name"].value`` and the view updates, exactly as
when a student drags the slider. Only core ipywidgets are used, so the explorers
run with ipywidgets 7.7 (Colab) and 8.x.

The picture is one figure by the field's conventions (:func:`deconvlab.viz.panel_figure`: panels
of one size, a colour key on every map): its text and keys are drawn once by matplotlib, and a
move pastes the new panels into it (:class:`deconvlab.viz.PanelCanvas`), a few milliseconds.

Displayed, an explorer leaves the live widget *and* a static PNG of its current state in the
cell's output (:meth:`Explorer._repr_mimebundle_`): one output whose bundle holds the widget view,
``image/png`` and ``text/plain``. A widget front end (JupyterLab, Notebook, Colab, VS Code) shows
the widget; where none runs -- nbconvert's HTML without saved widget state, PDF, GitHub's viewer --
the picture shows (the pattern of ipympl's figures, which nbconvert's ``WidgetsDataTypeFilter``
honours). ``jupyter nbconvert --execute`` saves the widget state by default; its HTML then draws the
widgets from that state (the live pictures included) with a script it loads from a CDN. For an
offline handout add ``--ExecutePreprocessor.store_widget_state=False``: the PNGs show.

Redraws run torch on one thread: a slider's work (a 64-px image, a few small
backward passes) gains nothing from a second thread, and where cores are shared
(Binder's CPU quota, a busy laptop) waiting for that thread made moves 5-30 times
slower. The caller's thread count is restored afterwards.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from ..checks import as_int, check_rule_list
from ..interrupts import Section, critical
from ..rules import get_rule
from ..viz import PanelCanvas, Rows, figure_png, panel_figure

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

__all__ = ["Explorer", "check_scale", "one_thread", "rule_names_of"]


def check_scale(scale: object, name: str = "scale") -> int:
    """Screen pixels per image pixel: an integer from 1 to 16 (TypeError or ValueError naming it)."""
    return as_int(name, scale, 1, 16)


def rule_names_of(rules: object, name: str = "rules") -> list[str]:
    """The canonical names of a non-empty list of distinct rules; each error names ``name[i]``."""
    names: list[str] = []
    for index, item in enumerate(check_rule_list(rules, name)):
        try:
            rule = get_rule(item)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{name}[{index}]: {error}") from None
        if rule.name in names:
            raise ValueError(f"{name} lists the rule {rule.name!r} twice")
        names.append(rule.name)
    if not names:
        raise ValueError(f"{name} is empty; give at least one rule, e.g. {name}=['deconvnet']")
    return names


@contextmanager
@critical
def one_thread() -> Iterator[None]:
    """Run torch's CPU kernels on one thread in the block; restore the count after."""
    with Section():  # a Ctrl-C is held until the count is back (deconvlab.interrupts)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


class Explorer:
    """Base class: ``controls`` drive ``redraw``, which updates ``view`` in place.

    Subclasses build their widgets, then call :meth:`_connect`; they implement
    :meth:`redraw` so that it only recomputes what the changed control affects
    (cache forward passes; a slider move must not redo work that did not change), and
    draw with :meth:`_draw`, which keeps the panels for :meth:`figure`.
    """

    controls: dict[str, widgets.Widget]
    view: widgets.Widget
    widget: widgets.Widget
    rows: Rows
    canvas: PanelCanvas
    row_labels: Sequence[str] | None = None
    panel_size: int | tuple[int, int] | None = None

    def _connect(
        self,
        controls: Mapping[str, widgets.Widget],
        view: widgets.Widget,
        layout: widgets.Widget | None = None,
    ) -> None:
        self.controls = dict(controls)
        self.view = view
        self.widget = (
            layout if layout is not None else widgets.VBox([widgets.HBox(list(self.controls.values())), view])
        )
        self.last_redraw_seconds = 0.0
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self._on_change(None)

    def _on_change(self, change: dict | None) -> None:
        start = time.perf_counter()
        with one_thread():
            self.redraw(None if change is None else change["owner"])
        self.last_redraw_seconds = time.perf_counter() - start

    def redraw(self, changed: widgets.Widget | None) -> None:
        """Update ``view`` after ``changed`` moved (None: first draw)."""
        raise NotImplementedError

    def _draw(self, template: Hashable, rows: Rows) -> None:
        """Show ``rows`` in ``view``: pasted into the canvas of ``template`` (its titles and keys).

        A template names what the panels' text and keys depend on (e.g. the chosen rule): its
        canvas is drawn by matplotlib the first time only.
        """
        canvases = self.__dict__.setdefault("_canvases", {})
        if template not in canvases:
            canvases[template] = PanelCanvas(rows, self.panel_size, self.row_labels)
        self.rows, self.canvas = rows, canvases[template]
        self.view.value = self.canvas.png(rows)

    def summary(self) -> str:
        """One line on the current state (the static figure's title)."""
        return ""

    def _add_model_choice(self, controls: dict[str, widgets.Widget], names: Sequence[str]) -> None:
        """Let ``controls`` choose among the models ``names``: a dropdown when there are several."""
        self._model_names = list(names)
        if len(self._model_names) > 1:
            controls["model"] = widgets.Dropdown(options=self._model_names, description="model")

    @property
    def model_name(self) -> str:
        """The chosen model's name (:meth:`_add_model_choice`; the only one when there is no dropdown)."""
        control = self.controls.get("model")
        return control.value if control is not None else self._model_names[0]

    def figure(self) -> Figure:
        """The current picture as a matplotlib ``Figure`` (:func:`deconvlab.viz.panel_figure`), titled by
        :meth:`summary`: what a page without a widget front end shows."""
        return panel_figure(self.rows, self.panel_size, title=self.summary(), row_labels=self.row_labels)

    def static_png(self) -> bytes:
        """:meth:`figure` as PNG bytes."""
        return figure_png(self.figure())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """The widget view, a static PNG of the current state and a text line, in one output.

        Front ends that run widgets pick the view; nbconvert (without saved widget state), PDF
        and GitHub's viewer fall back to the PNG. Built by hand: ipywidgets 7.7 widgets have no
        ``_repr_mimebundle_``.
        """
        view = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
        return {
            WIDGET_VIEW: view,
            "image/png": base64.b64encode(self.static_png()).decode("ascii"),
            "text/plain": f"{type(self).__name__}: {self.summary() or 'a slider explorer'}",
        }
