"""Per notebook: execution time and the kernel's peak memory; per explorer: slider callback times.

Each notebook runs top to bottom in a fresh kernel (as nbval and a student do).
Then, in the same kernel, every slider of every :class:`deconvlab.widgets.Explorer`
the notebook built is moved 30 times from code, and the time of each redraw is
recorded; finally the kernel reports its own peak resident memory (ru_maxrss).

Targets (DESIGN.md): each notebook ≤ 120 s on 2 cores and ≤ 1 GB peak kernel
memory (Binder's guarantee); median slider callback ≤ 50 ms on the teaching model.

Usage::

    python benchmarks/bench_notebooks.py                   # all notebooks
    python benchmarks/bench_notebooks.py notebooks/01_*.ipynb --moves 50
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import gc, json, resource, statistics
import ipywidgets as _w
from deconvlab.widgets import Explorer as _Explorer

def _values(control):
    if isinstance(control, (_w.IntSlider, _w.IntRangeSlider)):
        return list(range(control.min, control.max + 1, control.step))
    if isinstance(control, _w.FloatSlider):
        count = int(round((control.max - control.min) / control.step))
        return [control.min + i * control.step for i in range(count + 1)]
    return [option[1] if isinstance(option, tuple) else option for option in getattr(control, "options", [])]

_sliders = (_w.IntSlider, _w.FloatSlider, _w.SelectionSlider)
_report = {}
for _index, _explorer in enumerate(o for o in gc.get_objects() if isinstance(o, _Explorer)):
    _items = list(_explorer.controls.items())
    _moved = [(k, c) for k, c in _items if isinstance(c, _sliders)] or _items[:1]
    for _name, _control in _moved:
        _start = _control.value
        _choices = [v for v in _values(_control) if v != _start] or [_start]
        _times = []
        for _move in range(MOVES):
            _control.value = _choices[_move % len(_choices)]
            _times.append(_explorer.last_redraw_seconds)
        _control.value = _start
        _times.sort()
        _report[f"{type(_explorer).__name__}[{_index}].{_name}"] = {
            "median_ms": 1000 * statistics.median(_times),
            "p95_ms": 1000 * _times[min(len(_times) - 1, int(0.95 * len(_times)))],
            "moves": len(_times),
        }
print(json.dumps({"callbacks": _report,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_notebook(path: Path, moves: int, timeout: int) -> dict:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        probe = nbformat.v4.new_code_cell(PROBE.replace("MOVES", str(moves)))
        notebook.cells.append(probe)
        client.execute_cell(probe, len(notebook.cells) - 1)
    text = "".join(output.get("text", "") for output in probe.outputs if output.get("name") == "stdout")
    measured = json.loads(text.strip().splitlines()[-1])
    return {"seconds": seconds, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_notebooks = sorted(glob.glob(str(ROOT / "notebooks" / "*.ipynb")))
    parser.add_argument("notebooks", nargs="*", default=default_notebooks)
    parser.add_argument("--moves", type=int, default=30, help="slider moves per explorer")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--json", help="write the raw figures to this file")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    results = {}
    print("| notebook | run time s | kernel peak MiB |\n|---|---:|---:|")
    for name in args.notebooks:
        result = run_notebook(Path(name), args.moves, args.timeout)
        results[Path(name).name] = result
        print(f"| {Path(name).name} | {result['seconds']:.1f} | {result['peak_rss_mib']:.0f} |", flush=True)
    print("\n| explorer.control | median ms | p95 ms |\n|---|---:|---:|")
    for notebook, result in results.items():
        for key, figures in result["callbacks"].items():
            print(f"| {notebook[:2]}: {key} | {figures['median_ms']:.1f} | {figures['p95_ms']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
