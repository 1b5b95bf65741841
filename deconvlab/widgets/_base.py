"""The shape every explorer shares: controls, one view updated in place, a box to display.

An explorer is a plain object built from library functions, usable without a
notebook: set ``explorer.controls["name"].value`` and the view updates, exactly as
when a student drags the slider. Only core ipywidgets are used, so the explorers
run with ipywidgets 7.7 (Colab) and 8.x.

Redraws run torch on one thread: a slider's work (a 64-px image, a few small
backward passes) gains nothing from a second thread, and where cores are shared
(Binder's CPU quota, a busy laptop) waiting for that thread made moves 5-30 times
slower. The caller's thread count is restored afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import ipywidgets as widgets
import torch

from ..checks import as_int, check_rule_list
from ..interrupts import Section, critical
from ..rules import get_rule

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
    (cache forward passes; a slider move must not redo work that did not change).
    """

    controls: dict[str, widgets.Widget]
    view: widgets.Widget
    widget: widgets.Widget

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

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
