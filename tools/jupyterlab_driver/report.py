"""What a notebook's run in the browser found, and the session's timing table."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class NotebookReport:
    """One notebook, run in JupyterLab in Chromium.

    ``sliders`` counts the slider views rendered, ``sliders_built`` the slider widgets the
    kernel built (their class names); ``problems`` is empty when a student would see no fault.
    """

    notebook: str
    run_s: float | None = None
    code_cells: int = 0
    executed_cells: int = 0
    sliders: int = 0
    sliders_built: list[str] = field(default_factory=list)
    slider_round_trip_ms: float | None = None  # median over the key presses
    slider_round_trip_ms_all: list[float] = field(default_factory=list)
    slider_view: str | None = None
    kernel_peak_rss_mb: float | None = None
    screenshot: str | None = None
    problems: list[str] = field(default_factory=list)


def _row(r: NotebookReport, width: int) -> str:
    rtt = (
        "-"
        if r.slider_round_trip_ms is None
        else (f"{r.slider_round_trip_ms:.0f} (max {max(r.slider_round_trip_ms_all):.0f})")
    )
    run = "-" if r.run_s is None else f"{r.run_s:.1f}"
    mem = "-" if r.kernel_peak_rss_mb is None else f"{r.kernel_peak_rss_mb:.0f}"
    cells = f"{r.executed_cells}/{r.code_cells}"
    sliders = f"{r.sliders}/{len(r.sliders_built)}"
    return f"{r.notebook:{width}} {run:>8} {cells:>7} {sliders:>8} {rtt:>22} {mem:>16}"


def summary_lines(reports: list[NotebookReport]) -> list[str]:
    """The timing table: one row per notebook, then its problems, if any."""
    width = max([40, *(len(r.notebook) for r in reports)])
    lines = [
        f"{'notebook':{width}} {'run (s)':>8} {'cells':>7} {'sliders':>8} "
        f"{'slider RTT ms, median':>22} {'kernel peak (MB)':>16}"
    ]
    for r in reports:
        lines.append(_row(r, width))
        lines.extend(f"    ! {p}" for p in r.problems)
    lines.append("(cells: executed/code; sliders: rendered/built by the kernel)")
    return lines


def write_json(path: Path, reports: list[NotebookReport], versions: dict, slider_moves: int) -> None:
    """Write the reports, with the versions of the browser and front end, as JSON."""
    payload = {"versions": versions, "slider_moves": slider_moves, "notebooks": [asdict(r) for r in reports]}
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
