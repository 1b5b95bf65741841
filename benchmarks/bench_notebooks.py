"""Per notebook: execution time and the kernel's peak memory; per explorer: slider callback times;
and the notebooks' run time with 1 and with 2 torch threads, quiet and beside a competing CPU load.

Each notebook runs top to bottom in a fresh kernel (as nbval and a student do).
Then, in the same kernel, every slider of every :class:`deconvlab.widgets.Explorer`
the notebook built is moved 30 times from code, and the time of each redraw is
recorded; finally the kernel reports its own peak resident memory (ru_maxrss).

Threads: each notebook runs again in fresh kernels with ``DECONVLAB_THREADS`` (read by
:func:`deconvlab.runtime.set_notebook_threads`) and ``OMP_NUM_THREADS`` set to each count, first
with nothing else running, then beside ``--load`` processes that each spin one core (started
before and killed after, by their process ids), counts interleaved; the median of ``--repeat``
runs is reported. The notebooks use the count that wins under load (``runtime.NOTEBOOK_THREADS``).

Targets (DESIGN.md): each notebook ≤ 120 s on 2 cores, also with a competing CPU load, and
≤ 1 GB peak kernel memory (Binder's guarantee); median slider callback ≤ 50 ms on the teaching model.

Usage::

    python benchmarks/bench_notebooks.py                   # all notebooks, both tables
    python benchmarks/bench_notebooks.py notebooks/01_*.ipynb --moves 50
    python benchmarks/bench_notebooks.py --no-main --repeat 3 --load 0 1   # threads only
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
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


def run_notebook(path: Path, moves: int | None, timeout: int) -> dict:
    """Run ``path`` in a fresh kernel; with ``moves``, then move every slider and read peak memory."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        if moves is None:
            return {"seconds": seconds}
        probe = nbformat.v4.new_code_cell(PROBE.replace("MOVES", str(moves)))
        notebook.cells.append(probe)
        client.execute_cell(probe, len(notebook.cells) - 1)
    text = "".join(output.get("text", "") for output in probe.outputs if output.get("name") == "stdout")
    measured = json.loads(text.strip().splitlines()[-1])
    return {"seconds": seconds, **measured}


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[list[int]]:
    """``processes`` Python processes each spinning one core; killed by process id on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        time.sleep(0.5 if spinners else 0)  # let them reach the scheduler
        yield [p.pid for p in spinners]
    finally:
        for p in spinners:
            p.kill()
            p.wait()


@contextlib.contextmanager
def kernel_threads(threads: int) -> Iterator[None]:
    """Kernels started in the block run torch on ``threads`` threads (the notebooks' own call too)."""
    saved = {name: os.environ.get(name) for name in ("DECONVLAB_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(DECONVLAB_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def compare_threads(
    notebooks: list[str], threads: list[int], loads: list[int], repeat: int, timeout: int
) -> dict:
    """Median run time per notebook, competing load and thread count; counts interleaved."""
    times: dict = {}
    for load in loads:
        with competing_load(load) as pids:
            print(
                f"\ncompeting load: {load} spinning process(es) {pids}; load average {os.getloadavg()}",
                flush=True,
            )
            for name in notebooks:
                print(f"{Path(name).name}: load average {os.getloadavg()[0]:.1f}", flush=True)
                for _ in range(repeat):
                    for count in threads:
                        with kernel_threads(count):
                            seconds = run_notebook(Path(name), None, timeout)["seconds"]
                        times.setdefault((Path(name).name, load, count), []).append(seconds)
                        print(f"  {count} thread(s): {seconds:.1f} s", flush=True)
    return {key: statistics.median(values) for key, values in times.items()}


def _spinners(count: int) -> str:
    return f"{count} spinning process{'es' * (count != 1)}"


def print_thread_table(medians: dict, threads: list[int], loads: list[int]) -> None:
    head = " | ".join(f"{n} thread{'s' * (n > 1)} (s)" for n in threads)
    ratio = f" | {threads[-1]} / {threads[0]} threads" if len(threads) > 1 else ""
    print(f"\n| notebook | competing load | {head}{ratio} |")
    print("|---|---:|" + "---:|" * (len(threads) + bool(ratio)))
    for notebook in sorted({key[0] for key in medians}):
        for load in loads:
            cells = [medians[(notebook, load, n)] for n in threads]
            row = " | ".join(f"{s:.1f}" for s in cells)
            if ratio:
                row += f" | {cells[-1] / cells[0]:.2f}x"
            print(f"| {notebook} | {_spinners(load)} | {row} |")
    for load in loads:
        totals = [sum(medians[(nb, load, n)] for nb in {key[0] for key in medians}) for n in threads]
        print(
            f"all notebooks, {_spinners(load)}: "
            + ", ".join(f"{n} thread(s) {s:.1f} s" for n, s in zip(threads, totals))
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_notebooks = sorted(glob.glob(str(ROOT / "notebooks" / "*.ipynb")))
    parser.add_argument("notebooks", nargs="*", default=default_notebooks)
    parser.add_argument("--moves", type=int, default=30, help="slider moves per explorer")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--json", help="write the raw figures to this file")
    parser.add_argument(
        "--threads", type=int, nargs="*", default=[1, 2], help="torch thread counts to compare"
    )
    parser.add_argument("--load", type=int, nargs="*", default=[0, 1], help="competing spinning processes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per notebook, load and thread count")
    parser.add_argument("--no-main", action="store_true", help="only the thread comparison")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    if not args.no_main:
        main_tables(args)
    if args.threads:
        medians = compare_threads(args.notebooks, args.threads, args.load, args.repeat, args.timeout)
        print_thread_table(medians, args.threads, args.load)


def main_tables(args: argparse.Namespace) -> None:
    """Run time and peak memory per notebook, with the notebooks' own thread count; slider times."""
    results = {}
    print(f"load average {os.getloadavg()}")
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
