"""Run a notebook in JupyterLab in Chromium, as a student would, and report what goes wrong.

Run all cells from the front end; then check that every code cell ran without error output,
that every widget output rendered as a widget (no text fallback, no "Error displaying widget",
no "Click to show javascript error" box), that the notebook rendered at least as many sliders
as its kernel built, that the first slider redraws its view when moved with the keyboard, and
that the kernel logged no error.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tools.jupyterlab_driver import kernel_query, widget_checks
from tools.jupyterlab_driver.page_scripts import script
from tools.jupyterlab_driver.report import NotebookReport
from tools.jupyterlab_driver.server import JupyterLab
from tools.jupyterlab_driver.slider_timing import time_slider, wait_until
from tools.jupyterlab_driver.widget_scan import WIDGET_MIME, WidgetScan, scan_widgets, settled_scan

NOTEBOOK_OPEN_TIMEOUT_S = 90.0
NOTEBOOK_RUN_TIMEOUT_S = float(os.environ.get("DECONVLAB_BROWSER_RUN_TIMEOUT", "240"))
WIDGET_SETTLE_TIMEOUT_S = 20.0
KERNEL_QUERY_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 1000}
FRONT_END_HINT = (
    "(is the @jupyter-widgets/jupyterlab-manager extension installed, enabled and "
    "matching the kernel's ipywidgets?)"
)


@dataclass
class NotebookRun:
    """A notebook's report and the final cell states (``js/cell_states.js``)."""

    report: NotebookReport
    state: dict

    def problems(self) -> list[str]:
        return list(self.report.problems)

    def assert_ok(self) -> None:
        """AssertionError listing every problem, with the screenshot's path."""
        problems = self.problems()
        assert not problems, (
            f"{self.report.notebook} in the browser (screenshot: "
            f"{self.report.screenshot}):\n  " + "\n  ".join(problems)
        )


class NotebookDriver:
    """Opens notebooks of a ``JupyterLab`` in a Playwright ``browser`` and checks them.

    Parameters
    ----------
    lab : JupyterLab
        A started server.
    browser : playwright.sync_api.Browser
        Chromium.
    artifacts : Path
        Where screenshots go.
    reports : list, optional
        Every recorded ``NotebookReport`` is appended here.
    """

    def __init__(self, lab: JupyterLab, browser, artifacts: Path, reports: list | None = None):
        self.lab = lab
        self.browser = browser
        self.artifacts = artifacts
        self.reports = reports if reports is not None else []

    def run(
        self,
        rel_path: str,
        exercise_slider: bool = True,
        record: bool = True,
        settle_timeout_s: float = WIDGET_SETTLE_TIMEOUT_S,
    ) -> NotebookRun:
        """Open ``rel_path`` (relative to the server root) in a fresh page and check it."""
        report = NotebookReport(notebook=rel_path)
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        state: dict = {}
        try:
            state = self._check(page, rel_path, report, exercise_slider, settle_timeout_s)
            report.problems.extend(f"uncaught error in the page: {e}" for e in page_errors)
        finally:
            self._screenshot(page, report)
            context.close()
            with contextlib.suppress(Exception):
                self.lab.shutdown_kernels()
            if record:
                self.reports.append(report)
        return NotebookRun(report, state)

    def _check(
        self, page, path: str, report: NotebookReport, exercise_slider: bool, settle_timeout_s: float
    ) -> dict:
        page.goto(self.lab.lab_url(path), wait_until="domcontentloaded")
        kernel = wait_until(page, lambda: page.evaluate(script("panel_ready"), path), NOTEBOOK_OPEN_TIMEOUT_S)
        if not kernel:
            report.problems.append(f"notebook or kernel not ready after {NOTEBOOK_OPEN_TIMEOUT_S:.0f}s")
            return {}
        offsets = self.lab.log_offsets()
        state = run_all(page, path, report)
        report.sliders_built = sliders_built(page, path, report)
        scan = settled_scan(page, path, state["widgetCells"], len(report.sliders_built), settle_timeout_s)
        report_widgets(scan, report)
        if exercise_slider and scan.first_slider_cell is not None:
            time_slider(page, path, scan.first_slider_cell, report)
            report.problems.extend(
                f"after moving the slider: {p}" for p in new_problems(page, path, state, scan)
            )
        report.problems.extend(self.lab.errors_since(offsets))
        report.kernel_peak_rss_mb = self.lab.kernel_peak_rss_mb(kernel["id"])
        return state

    def _screenshot(self, page, report: NotebookReport) -> None:
        shot = self.artifacts / (report.notebook.replace("/", "__") + ".png")
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
            report.screenshot = str(shot)


def cell_states(page, path: str) -> dict:
    """The code cells' states, from the notebook model (``js/cell_states.js``)."""
    return page.evaluate(script("cell_states"), [path, WIDGET_MIME])


def run_all(page, path: str, report: NotebookReport) -> dict:
    """Run all cells from the front end; wait until run-all returned and the kernel is idle."""
    t0 = time.monotonic()
    page.evaluate(script("run_all"), path)

    def finished():
        s = cell_states(page, path)
        return s if s["runAll"] is not None and s["kernel"] == "idle" and not s["running"] else None

    state = wait_until(page, finished, NOTEBOOK_RUN_TIMEOUT_S)
    report.run_s = round(time.monotonic() - t0, 2)
    if not state:
        state = cell_states(page, path)
        report.problems.append(
            f"run-all did not finish within {NOTEBOOK_RUN_TIMEOUT_S:.0f}s "
            f"(kernel {state['kernel']}, cells still running: {state['running']})"
        )
    report.code_cells, report.executed_cells = state["codeCells"], state["executed"]
    if state["unexecuted"]:
        report.problems.append(f"code cells not executed: {state['unexecuted']}")
    report.problems.extend(f"error output in {e}" for e in state["errors"])
    if state["runAll"] and not state["runAll"]["ok"]:
        report.problems.append(f"run-all command failed: {state['runAll']['result']}")
    return state


def sliders_built(page, path: str, report: NotebookReport) -> list[str]:
    """Class names of the slider widgets alive in the kernel (``kernel_query``)."""
    reply = page.evaluate(
        script("kernel_user_expression"), [path, kernel_query.SLIDER_EXPRESSION, KERNEL_QUERY_TIMEOUT_MS]
    )
    try:
        return kernel_query.sliders_from_reply(reply)
    except RuntimeError as exc:
        report.problems.append(str(exc))
        return []


def report_widgets(scan: WidgetScan, report: NotebookReport) -> None:
    """Record the rendered slider count and every widget problem, the slider shortfall too."""
    report.sliders = scan.sliders
    problems = scan.problems()
    report.problems.extend(problems)
    if problems:
        report.problems.append(FRONT_END_HINT)
    shortfall = widget_checks.slider_shortfall(report.sliders_built, scan.sliders)
    if shortfall:
        report.problems.append(shortfall)


def new_problems(page, path: str, state: dict, scan: WidgetScan) -> list[str]:
    """Error outputs and widget problems that were not there before the slider moved."""
    after = cell_states(page, path)
    errors = [f"error output in {e}" for e in after["errors"] if e not in state["errors"]]
    before = set(scan.problems())
    rescan = scan_widgets(page, path, after["widgetCells"])
    return errors + [p for p in rescan.problems() if p not in before]
