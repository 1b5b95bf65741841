"""Cost of maps for many targets: one forward pass against one call per target.

``dl.attribute(model, x, targets=[...])`` records the forward pass once and runs one
backward pass per target over the kept graph. This times, for each model (torchvision's,
random init, 224 px; or the shipped teaching model on 64 px shapes), on CPU, for one rule:

* ``plain``: plain autograd, one forward and one backward pass (the floor of one map);
* ``dl:1 call``: ``deconvlab.attribute`` for one target;
* ``dl:T calls``: ``deconvlab.attribute`` once per target (T forward passes);
* ``dl:targets``: ``targets=`` with the default path, one backward pass per target
  (``retain_graph``);
* ``dl:targets batched``: the same maps from one batched backward pass
  (``torch.autograd.grad(..., is_grads_batched=True)``, the backward pass under vmap).

The house style of ``bench_rules.py``: after a warm-up, every round runs each method once in
a fresh random order; each method's time is divided by the time of ``dl:T calls`` *of the
same round*; the table gives the median of these per-round ratios with a 95 % bootstrap
interval, for wall and process CPU time, from the quiet rounds (other processes below
``--quiet`` of the CPUs) when there are at least 5 of them.

Usage::

    python benchmarks/bench_targets.py                        # resnet18:1, 10 targets, 15 rounds, 2 threads
    python benchmarks/bench_targets.py --models resnet18:1 vgg16:1 alexnet:4 --targets 10
    python benchmarks/bench_targets.py --models teaching:1 teaching:16 --targets 6   # the shipped CNN
    python benchmarks/bench_targets.py --quick                # CI-sized: 5 rounds, 1 warm-up
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rules import (
    MIN_QUIET,
    add_round_options,
    build,
    interval,
    plain_autograd,
    quiet_rounds,
    ratio,
    start_rounds,
    time_table,
)

import deconvlab as dl

CALLS = "dl:T calls"


def batched_backward(model: torch.nn.Module, x: torch.Tensor, targets: list[int], rule: str) -> torch.Tensor:
    """The maps of ``targets`` from one forward pass and ONE batched backward pass: the seeds
    stacked ``(T, *output.shape)`` and ``is_grads_batched=True`` (the backward pass under vmap)."""
    recorded = dl.record(model, x, targets=targets, rule=rule)
    (maps,) = torch.autograd.grad(recorded.output, recorded.wrt, recorded.seed, is_grads_batched=True)
    return maps


def methods(model: torch.nn.Module, targets: int, rule: str) -> dict[str, Callable[[torch.Tensor], object]]:
    """Every timed method, by key."""
    classes = list(range(targets))
    return {
        "plain": lambda x: plain_autograd(model, x),
        "dl:1 call": lambda x: dl.attribute(model, x, 0, rule=rule),
        CALLS: lambda x: [dl.attribute(model, x, c, rule=rule) for c in classes],
        "dl:targets": lambda x: dl.attribute(model, x, targets=classes, rule=rule),
        "dl:targets batched": lambda x: batched_backward(model, x, classes, rule),
    }


def check_equal(table: dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor) -> None:
    """Both paths give the maps of separate calls (else the timing means nothing)."""
    separate = torch.stack(table[CALLS](x))  # type: ignore[arg-type]
    for key in ("dl:targets", "dl:targets batched"):
        maps = table[key](x)
        assert isinstance(maps, torch.Tensor)
        if not torch.allclose(maps, separate, rtol=1e-5, atol=1e-7):
            raise AssertionError(f"{key} differs from separate calls by {(maps - separate).abs().max():.3g}")


def target_count(name: str, model: torch.nn.Module, x: torch.Tensor, asked: int) -> int:
    """How many of the ``asked`` targets ``model`` has classes for (all of them if fewer)."""
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    if asked > classes:
        print(f"{name} has {classes} classes: timing them all (--targets {asked} asked for more)")
    return min(asked, classes)


def time_methods(
    name: str, batch: int, args: argparse.Namespace
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Seconds per round and method (rounds, clocks), interleaved in a random order each round,
    the share of the CPUs other processes used in each round, and the number of targets timed
    (at most the model's classes); the maps checked equal first."""
    model, x = build(name, batch)
    count = target_count(name, model, x, args.targets)
    table = methods(model, count, args.rule)
    check_equal(table, x)
    return (*time_table(table, x, args), count)


def report(
    name: str,
    batch: int,
    samples: dict[str, np.ndarray],
    load: np.ndarray,
    count: int,
    args: argparse.Namespace,
) -> list[str]:
    """Markdown table: medians, and ratios to T separate calls and to plain autograd."""
    all_classes = " (all the model's classes)" if count < args.targets else ""
    used = quiet_rounds(samples, load, args.quiet)
    if used is None:
        used, basis = samples, f"all {len(load)} rounds, LOADED: fewer than {MIN_QUIET} quiet ones"
    else:
        basis = f"{len(used['plain'])} quiet rounds of {len(load)}"
    lines = [
        f"\n### {name}, batch {batch}, {count} targets{all_classes}, {args.rule}, "
        f"{torch.get_num_threads()} threads; {basis} (other processes used a median "
        f"{np.median(load):.0%} of the CPUs)",
        "",
        "| method | median wall s | ÷ T calls, wall [95 % CI] | ÷ T calls, CPU [95 % CI] | × plain, wall |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, values in used.items():
        wall_ratio, cpu_ratio = ratio(used, key, base=CALLS)
        plain_ratio = ratio(used, key)[0][0]
        lines.append(
            f"| {key} | {np.median(values[:, 0]):.3f} | {interval(wall_ratio)} | {interval(cpu_ratio)} "
            f"| {plain_ratio:.2f} |"
        )
    default, batched = (ratio(used, key, base=CALLS)[0][0] for key in ("dl:targets", "dl:targets batched"))
    wall, cpu = ratio(used, "dl:targets batched", base="dl:targets")
    _, low, high = wall
    verdict = "batched backward" if high < 1 else "one backward per target" if low > 1 else "neither (tie)"
    lines += [
        f"\nT = {count}: T targets from one forward pass ÷ T separate calls (wall): "
        f"one backward per target {default:.3f}, batched backward {batched:.3f}",
        f"batched ÷ one backward per target: wall {interval(wall)}, CPU {interval(cpu)}; faster: {verdict}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="*", help="name:batch pairs (torchvision names or teaching), default: resnet18:1"
    )
    parser.add_argument("--targets", type=int, default=10, help="number of targets (classes 0..T-1)")
    parser.add_argument("--rule", default="guided_backprop")
    add_round_options(parser, "5 rounds, 1 warm-up")
    parser.add_argument("--json", help="write the raw samples to this file")
    args = parser.parse_args()
    start_rounds(args, ["resnet18:1"], ["resnet18:1"])
    raw = {}
    for spec in args.models:
        name, batch = spec.split(":")
        samples, load, count = time_methods(name, int(batch), args)
        seconds = {key: {"wall": v[:, 0].tolist(), "cpu": v[:, 1].tolist()} for key, v in samples.items()}
        raw[spec] = {"seconds": seconds, "other_processes_cpu_share": load.tolist()}
        print("\n".join(report(name, int(batch), samples, load, count, args)), flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(raw, handle, indent=2)


if __name__ == "__main__":
    main()
