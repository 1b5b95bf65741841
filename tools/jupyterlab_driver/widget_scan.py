"""Scan a notebook's widget outputs in the page: scroll each into view, check its rendering."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tools.jupyterlab_driver import widget_checks
from tools.jupyterlab_driver.page_scripts import script

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@dataclass
class WidgetScan:
    """The widget outputs of a notebook: ``(cell index, {index, mime, html})`` pairs."""

    outputs: list[tuple[int, dict]] = field(default_factory=list)

    @property
    def sliders(self) -> int:
        """Slider views rendered across all widget outputs."""
        return sum(
            widget_checks.output_facts(o["html"]).sliders
            for _, o in self.outputs
            if o["html"] and o["mime"] is None
        )

    @property
    def first_slider_cell(self) -> int | None:
        """Index of the first cell whose widget outputs hold a slider view."""
        return next(
            (
                cell
                for cell, o in self.outputs
                if o["html"] and o["mime"] is None and widget_checks.output_facts(o["html"]).sliders
            ),
            None,
        )

    @property
    def transient(self) -> bool:
        """Whether an output may still become a widget view ("Loading widget...")."""
        return any(widget_checks.is_transient(o["mime"], o["html"]) for _, o in self.outputs)

    def problems(self) -> list[str]:
        """Every output's rendering problems, as "cell i, output k: ..."."""
        return [
            f"widget in cell {cell}, output {o['index']}: {problem}"
            for cell, o in self.outputs
            for problem in widget_checks.output_problems(o["mime"], o["html"])
        ]


def scan_widgets(page, path: str, cells: list[int]) -> WidgetScan:
    """Scroll each cell of ``cells`` into view and collect its widget outputs."""
    scan = WidgetScan()
    for cell in cells:
        for output in page.evaluate(script("widget_outputs"), [path, cell, WIDGET_MIME]):
            scan.outputs.append((cell, output))
    return scan


def settled_scan(page, path: str, cells: list[int], sliders_built: int, timeout_s: float) -> WidgetScan:
    """Rescan until no output is still loading and at least ``sliders_built`` sliders rendered,
    or ``timeout_s`` passed; the last scan."""
    deadline = time.monotonic() + timeout_s
    scan = scan_widgets(page, path, cells)
    while (scan.transient or scan.sliders < sliders_built) and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        scan = scan_widgets(page, path, cells)
    return scan
