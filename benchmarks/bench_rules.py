"""Cost of a map: deconvlab's rules against plain autograd (the floor) and Captum.

The floor for one map is one forward plus one backward pass of plain autograd
(``torch.autograd.grad`` with respect to the input, as every library here does).
For each model (random init, 224 px, CPU) this times:

* ``plain``: plain autograd;
* ``dl:<rule>``: ``deconvlab.attribute`` with that rule;
* ``dl:3 rules``: the three rules from one forward pass, against three separate calls;
* ``captum:<method>``: Captum's Saliency / Deconvolution / GuidedBackprop, if installed;

and, with ``--memory``, the peak resident memory that one map adds above the
process's rest state, each measured in a fresh subprocess.

How it keeps noise out: after a warm-up, every round runs each method once, in a
fresh random order, so drift hits all methods alike, and each method's time is
divided by ``plain``'s time *of the same round*. The table gives the median of these
per-round ratios with a 95 % bootstrap interval, for wall time and for process CPU
time (all threads). Other processes are the largest noise on a small machine: they
stall the torch threads at every barrier, which costs wall time and, as the idle
thread spins, CPU time too. So each round also measures how much CPU other
processes used (``/proc/stat`` minus this process); the ratios come from the quiet
rounds (other processes below ``--quiet`` of the CPUs) when there are at least 5 of
them, else from all rounds, flagged as loaded. Read a ratio to ±2 % when its
interval is that narrow; ``--ci 0.02`` adds rounds until it is. On a shared machine
``--threads 1`` helps most: with no second torch thread to wait for, CPU time
hardly counts the load of other processes.

Usage::

    python benchmarks/bench_rules.py                  # all three models, 15 rounds, 2 threads
    python benchmarks/bench_rules.py --memory         # add peak memory (slower)
    python benchmarks/bench_rules.py --quick          # CI-sized: resnet18:4, 5 rounds
    python benchmarks/bench_rules.py --quick --threads 1   # on a shared machine: read the CPU column
    python benchmarks/bench_rules.py --models resnet18:4 --ci 0.02   # rounds until ±2 %
    python benchmarks/bench_rules.py --models resnet18@112:4         # 112 px inputs
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import torch
import torchvision

import deconvlab as dl

MODELS = {"vgg16": 2, "resnet18": 4, "alexnet": 8}
RULES = ("gradient", "deconvnet", "guided_backprop")
TARGET = 3
CLOCKS = ("wall", "cpu")
MIN_QUIET = 5  # quiet rounds needed to leave the loaded ones out


def architecture(name: str) -> str:
    """The model of a name with an optional input side, ``resnet18@112`` → ``resnet18``."""
    return name.partition("@")[0]


def pixels(name: str) -> int:
    """The side of the inputs :func:`build` gives ``name``: 64 for ``teaching``, else 224 or
    the side after ``@`` (``resnet18@112``)."""
    model, _, side = name.partition("@")
    return int(side) if side else 64 if model == "teaching" else 224


def build(name: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """Random-init torchvision model in eval mode and a random batch (224 px, or ``name@side``),
    or ``teaching``: the shipped teaching model (6 classes) on a batch of the 64 px shapes data."""
    if name == "teaching":
        return dl.models.teaching_model(), dl.data.shapes(batch, seed=0).images
    torch.manual_seed(0)
    model = torchvision.models.get_model(architecture(name), weights=None).eval()
    side = pixels(name)
    return model, torch.randn(batch, 3, side, side)


def add_round_options(parser: argparse.ArgumentParser, quick: str) -> None:
    """The options every benchmark's interleaved rounds take (``quick``: what ``--quick`` runs)."""
    parser.add_argument("--repeats", type=int, help="rounds of interleaved samples (default 15)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 2)")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.05,
        help="a round is quiet if other processes used less than this share of the CPUs",
    )
    parser.add_argument("--quick", action="store_true", help=f"CI-sized run: {quick}")
    parser.add_argument("--threads", type=int, default=2)


def start_rounds(args: argparse.Namespace, models: list[str], quick_models: list[str]) -> None:
    """Fill in the round defaults (``--quick`` or not), set the threads, print the versions and load."""
    args.models = args.models or (quick_models if args.quick else models)
    args.repeats = args.repeats or (5 if args.quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, deconvlab {dl.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )


def plain_autograd(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The floor: gradient of output ``TARGET`` with respect to the input."""
    leaf = x.detach().requires_grad_(True)
    output = model(leaf)
    seed = torch.zeros_like(output)
    seed[:, TARGET] = 1
    return torch.autograd.grad(output, leaf, seed)[0]


def captum_methods(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Captum's three counterparts, or nothing if Captum is not installed."""
    try:
        from captum.attr import Deconvolution, GuidedBackprop, Saliency
    except ImportError:
        return {}
    return {
        "captum:gradient": lambda x: Saliency(model).attribute(x, target=TARGET, abs=False),
        "captum:deconvnet": lambda x: Deconvolution(model).attribute(x, target=TARGET),
        "captum:guided_backprop": lambda x: GuidedBackprop(model).attribute(x, target=TARGET),
    }


def methods(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    """Every timed method, by key: ``plain``, ``dl:*`` and ``captum:*``."""
    table: dict[str, Callable[[torch.Tensor], object]] = {"plain": lambda x: plain_autograd(model, x)}
    for rule in RULES:
        table[f"dl:{rule}"] = lambda x, rule=rule: dl.attribute(model, x, TARGET, rule=rule)
    table["dl:3 rules"] = lambda x: dl.attribute(model, x, TARGET, rules=list(RULES))
    table["dl:3 calls"] = lambda x: [dl.attribute(model, x, TARGET, rule=rule) for rule in RULES]
    table.update(captum_methods(model))
    return table


def clock(run: Callable[[torch.Tensor], object], x: torch.Tensor) -> tuple[float, float]:
    """Wall and process CPU seconds of one call, with the garbage collector held off."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        run(x)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.enable()


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine (nan where unknown) and by this process."""
    try:
        with open("/proc/stat") as handle:  # cpu user nice system idle iowait irq softirq steal ...
            ticks = [int(field) for field in handle.readline().split()[1:9]]
        machine = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        machine = float("nan")
    own = resource.getrusage(resource.RUSAGE_SELF)
    return machine, own.ru_utime + own.ru_stime


def ratio(samples: dict[str, np.ndarray], key: str, base: str = "plain") -> np.ndarray:
    """Per-round ratios ``key / base`` and their 95 % bootstrap interval.

    Returns
    -------
    ndarray, shape (len(CLOCKS), 3)
        For each clock: median ratio, lower and upper bound of its interval.
    """
    ratios = samples[key] / samples[base]  # (rounds, clocks)
    resampled = np.random.default_rng(0).integers(len(ratios), size=(2000, len(ratios)))
    medians = np.median(ratios[resampled], axis=1)  # (2000, clocks)
    low, high = np.percentile(medians, [2.5, 97.5], axis=0)
    return np.stack([np.median(ratios, axis=0), low, high], axis=1)


def quiet_rounds(
    samples: dict[str, np.ndarray], load: np.ndarray, quiet: float
) -> dict[str, np.ndarray] | None:
    """The rounds in which other processes used less than ``quiet`` of the CPUs, or None if too few.

    Where the load is unknown (no ``/proc/stat``), every round counts as quiet.
    """
    keep = ~(load >= quiet)
    return {key: values[keep] for key, values in samples.items()} if keep.sum() >= MIN_QUIET else None


def widest(samples: dict[str, np.ndarray]) -> float:
    """Largest half-width (relative) of the wall-time intervals of deconvlab's ratios."""
    bounds = [ratio(samples, key)[0] for key in samples if key.startswith("dl:")]
    return max((high - low) / (2 * median) for median, low, high in bounds)


def time_methods(name: str, batch: int, args: argparse.Namespace) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """:func:`time_table` of this script's methods on ``name`` with a batch of ``batch``."""
    model, x = build(name, batch)
    return time_table(methods(model), x, args)


def time_table(
    table: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor, args: argparse.Namespace
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Seconds per round and method, interleaved in a random order each round.

    Runs ``args.warmup`` rounds untimed and ``args.repeats`` timed, then, with ``args.ci`` (if the
    script has that option), more (up to ``args.max_repeats``) until every ``dl:*`` ratio's
    interval over the quiet rounds is within ±``args.ci``.

    Returns
    -------
    samples : dict of str to ndarray, shape (rounds, len(CLOCKS))
    load : ndarray, shape (rounds,)
        Share of the machine's CPUs that other processes used during each round.
    """
    for _ in range(args.warmup):
        for run in table.values():
            run(x)
    order, shuffle = list(table), random.Random(0).shuffle
    rows: dict[str, list[tuple[float, float]]] = {key: [] for key in table}
    load = []
    ci = getattr(args, "ci", None)
    while True:
        shuffle(order)
        (machine, own), start = cpu_seconds(), time.perf_counter()
        for key in order:
            rows[key].append(clock(table[key], x))
        (machine_end, own_end), wall = cpu_seconds(), time.perf_counter() - start
        load.append((machine_end - machine - (own_end - own)) / ((os.cpu_count() or 1) * wall))
        if len(load) < args.repeats:
            continue
        samples = {key: np.array(values) for key, values in rows.items()}
        if not ci or len(load) >= args.max_repeats:
            return samples, np.array(load)
        quiet = quiet_rounds(samples, np.array(load), args.quiet)
        if quiet is not None and widest(quiet) <= ci:
            return samples, np.array(load)


def _resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def peak_memory_child(name: str, batch: int, method: str) -> None:
    """In a fresh process: MiB of peak resident memory that one map adds above the rest state.

    Resident memory is sampled every 0.2 ms during the call. The parent fixes glibc's mmap
    threshold, so large freed blocks go back to the OS and RSS tracks live memory.
    """
    torch.set_num_threads(2)
    model, x = build(name, batch)
    run = methods(model)[method]
    run(x)  # warm-up: kernels, allocator pools
    baseline = _resident_mib()
    peak, done = baseline, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _resident_mib())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run(x)
    finally:
        done.set()
        sampler.join()
    print(json.dumps({"mib": peak - baseline}))


def peak_memory(name: str, batch: int, method: str) -> float:
    """Peak MiB that one call of ``method`` adds, measured in a fresh subprocess."""
    command = [sys.executable, __file__, "--memory-child", name, str(batch), method]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])["mib"]


def interval(bounds: np.ndarray) -> str:
    median, low, high = bounds
    return f"{median:.3f} [{low:.3f}, {high:.3f}]"


def report(
    name: str,
    batch: int,
    samples: dict[str, np.ndarray],
    load: np.ndarray,
    quiet: float,
    memory: dict[str, float],
) -> list[str]:
    """Markdown table: medians, ratios to plain autograd with intervals, peak memory."""
    used = quiet_rounds(samples, load, quiet)
    if used is None:
        used, basis = samples, f"all {len(load)} rounds, LOADED: fewer than {MIN_QUIET} quiet ones"
    else:
        basis = f"{len(used['plain'])} quiet rounds of {len(load)}"
    lines = [
        f"\n### {name}, batch {batch}, {pixels(name)} px, {torch.get_num_threads()} threads; {basis} "
        f"(other processes used a median {np.median(load):.0%} of the CPUs; quiet: < {quiet:.0%})",
        "",
        "| method | median wall s | × plain, wall [95 % CI] | median CPU s | × plain, CPU [95 % CI] "
        "| peak MiB above baseline | × plain |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, values in used.items():
        wall, cpu = np.median(values, axis=0)
        wall_ratio, cpu_ratio = ratio(used, key)
        mem = memory.get(key)
        mem_cols = f"{mem:.0f} | {mem / memory['plain']:.2f}" if mem is not None else "– | –"
        lines.append(
            f"| {key} | {wall:.3f} | {interval(wall_ratio)} | {cpu:.3f} | {interval(cpu_ratio)} "
            f"| {mem_cols} |"
        )
    wall_ratio, cpu_ratio = ratio(used, "dl:3 rules", base="dl:3 calls")
    lines.append(
        f"\nthree rules from one forward pass ÷ three separate calls: wall {interval(wall_ratio)}, "
        f"CPU {interval(cpu_ratio)}"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="*",
        help="name:batch pairs (torchvision names), default: vgg16:2 resnet18:4 alexnet:8",
    )
    add_round_options(parser, "resnet18:4, 5 rounds, 1 warm-up")
    parser.add_argument(
        "--ci",
        type=float,
        default=0.0,
        help="add rounds until every dl:* wall ratio is known to ± this (e.g. 0.02)",
    )
    parser.add_argument("--max-repeats", type=int, default=60, help="upper limit on rounds with --ci")
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (subprocesses)")
    parser.add_argument("--json", help="write the raw samples to this file")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, batch, method = args.memory_child
        peak_memory_child(name, int(batch), method)
        return
    start_rounds(args, [f"{k}:{v}" for k, v in MODELS.items()], ["resnet18:4"])
    raw = {}
    for spec in args.models:
        name, batch = spec.split(":")
        samples, load = time_methods(name, int(batch), args)
        memory = {}
        if args.memory:
            memory = {
                key: peak_memory(name, int(batch), key)
                for key in ("plain", "dl:deconvnet", "dl:guided_backprop", "dl:3 rules")
            }
        seconds = {key: dict(zip(CLOCKS, values.T.tolist())) for key, values in samples.items()}
        raw[spec] = {"seconds": seconds, "other_processes_cpu_share": load.tolist(), "peak_mib": memory}
        print("\n".join(report(name, int(batch), samples, load, args.quiet, memory)), flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(raw, handle, indent=2)


if __name__ == "__main__":
    main()
