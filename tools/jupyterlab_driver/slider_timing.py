"""Move a slider with the keyboard and time each round trip: key press -> its view redrawn."""

from __future__ import annotations

import statistics
import time

from tools.jupyterlab_driver.page_scripts import script
from tools.jupyterlab_driver.report import NotebookReport

SLIDER_TIMEOUT_S = 2.0
SLIDER_MOVES = 5
# a slider's handle, ipywidgets 8 (noUiSlider) and 7 (jQuery UI)
SLIDER_HANDLES = ".widget-slider .noUi-handle, .widget-slider .ui-slider-handle"


def wait_until(page, predicate, timeout_s: float, interval_s: float = 0.25):
    """Poll ``predicate()`` until it is truthy or ``timeout_s`` passed; its last value."""
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        page.wait_for_timeout(interval_s * 1000)
        value = predicate()
    return value


def _one_move(page, path: str, cell: int, move: int) -> tuple[float | None, str | None, dict]:
    """Press an arrow key on the slider once: (round trip in ms or None, problem, armed)."""
    armed = page.evaluate(script("arm_slider"), [path, cell, SLIDER_HANDLES])
    if not armed["ok"]:
        return None, armed["why"], armed
    handle = page.locator('[data-dl-slider="1"]')
    handle.focus()
    handle.press(armed["key"])
    watch = wait_until(
        page,
        lambda: (lambda w: w if w["t1"] is not None else None)(page.evaluate("() => window.__dlWatch")),
        SLIDER_TIMEOUT_S + 0.5,
        0.01,
    )
    watch = watch or page.evaluate("() => window.__dlWatch")
    if watch["t0"] is None:
        return None, "the key press never reached its handle", armed
    if watch["t1"] is None:
        return (
            None,
            (
                f"move {move + 1}: {armed['key']} did not change its view ({armed['view']}, "
                f"value {watch['valueBefore']}) within {SLIDER_TIMEOUT_S:.0f} s"
            ),
            armed,
        )
    return watch["t1"] - watch["t0"], None, armed


def time_slider(page, path: str, cell: int, report: NotebookReport) -> None:
    """Move the first slider of code cell ``cell`` ``SLIDER_MOVES`` times with the keyboard.

    Each move must change the slider's view within ``SLIDER_TIMEOUT_S``; problems go to
    ``report.problems``, the round trips (ms) to ``report.slider_round_trip_ms[_all]``.
    """
    rtts = []
    for move in range(SLIDER_MOVES):
        rtt, problem, armed = _one_move(page, path, cell, move)
        report.slider_view = armed.get("view", report.slider_view)
        if problem:
            report.problems.append(f"first slider: {problem}")
            return
        rtts.append(round(rtt, 1))
        if rtt > SLIDER_TIMEOUT_S * 1000:
            report.problems.append(
                f"first slider, move {move + 1}: view changed after {rtt:.0f} ms "
                f"(limit {SLIDER_TIMEOUT_S:.0f} s)"
            )
        # let this move's redraw finish before the next one
        wait_until(page, lambda: page.evaluate(script("kernel_idle"), path), 30, 0.05)
        page.wait_for_timeout(100)
    report.slider_round_trip_ms = statistics.median(rtts)
    report.slider_round_trip_ms_all = rtts
