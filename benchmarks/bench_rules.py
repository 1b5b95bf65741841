"""Cost of a map: deconvlab's rules against plain autograd (the floor) and Captum.

The floor for one map is one forward plus one backward pass of plain autograd
(``torch.autograd.grad`` with respect to the input, as every library here does).
For each model (random init, 224 px, CPU) this reports the median time of:

* ``plain``: plain autograd;
* ``dl:<rule>``: ``deconvlab.attribute`` with that rule;
* ``dl:3 rules``: the three rules from one forward pass, against three separate calls;
* ``captum:<method>``: Captum's Saliency / Deconvolution / GuidedBackprop, if installed;

and, with ``--memory``, the peak resident memory that one map adds above the
process's rest state, each measured in a fresh subprocess.

Usage::

    python benchmarks/bench_rules.py                 # time, 2 threads, all three models
    python benchmarks/bench_rules.py --memory        # add peak memory (slower)
    python benchmarks/bench_rules.py --models resnet18:4 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import torch
import torchvision

import deconvlab as dl

MODELS = {"vgg16": 2, "resnet18": 4, "alexnet": 8}
RULES = ("gradient", "deconvnet", "guided_backprop")
TARGET = 3


def build(name: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    return model, torch.randn(batch, 3, 224, 224)


def plain_autograd(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    leaf = x.detach().requires_grad_(True)
    output = model(leaf)
    seed = torch.zeros_like(output)
    seed[:, TARGET] = 1
    return torch.autograd.grad(output, leaf, seed)[0]


def captum_methods(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
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
    table: dict[str, Callable[[torch.Tensor], object]] = {"plain": lambda x: plain_autograd(model, x)}
    for rule in RULES:
        table[f"dl:{rule}"] = lambda x, rule=rule: dl.attribute(model, x, TARGET, rule=rule)
    table["dl:3 rules"] = lambda x: dl.attribute(model, x, TARGET, rule=list(RULES))
    table["dl:3 calls"] = lambda x: [dl.attribute(model, x, TARGET, rule=rule) for rule in RULES]
    table.update(captum_methods(model))
    return table


def time_methods(name: str, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per method; methods are interleaved so drift hits all alike."""
    model, x = build(name, batch)
    table = methods(model)
    samples: dict[str, list[float]] = {key: [] for key in table}
    for run in table.values():  # warm-up
        run(x)
    for _ in range(repeats):
        for key, run in table.items():
            start = time.perf_counter()
            run(x)
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in samples.items()}


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
    command = [sys.executable, __file__, "--memory-child", name, str(batch), method]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])["mib"]


def report(name: str, batch: int, times: dict[str, float], memory: dict[str, float]) -> list[str]:
    floor = times["plain"]
    lines = [f"\n### {name}, batch {batch}, 224 px, {torch.get_num_threads()} threads", "",
             "| method | median s | × plain autograd | peak MiB above baseline | × plain |",
             "|---|---:|---:|---:|---:|"]
    for key, seconds in times.items():
        mem = memory.get(key)
        mem_cols = f"{mem:.0f} | {mem / memory['plain']:.2f}" if mem is not None else "– | –"
        lines.append(f"| {key} | {seconds:.3f} | {seconds / floor:.3f} | {mem_cols} |")
    together, separate = times["dl:3 rules"], times["dl:3 calls"]
    lines.append(f"\nthree rules from one forward pass: {together / separate:.3f} × three separate calls")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=[f"{k}:{v}" for k, v in MODELS.items()],
                        help="name:batch pairs (torchvision names), default: vgg16:2 resnet18:4 alexnet:8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also measure peak memory (subprocesses)")
    parser.add_argument("--json", help="write the raw figures to this file")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, batch, method = args.memory_child
        peak_memory_child(name, int(batch), method)
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, deconvlab {dl.__version__}")
    raw = {}
    for spec in args.models:
        name, batch = spec.split(":")
        times = time_methods(name, int(batch), args.repeats)
        memory = {}
        if args.memory:
            memory = {key: peak_memory(name, int(batch), key)
                      for key in ("plain", "dl:deconvnet", "dl:guided_backprop", "dl:3 rules")}
        raw[spec] = {"seconds": times, "peak_mib": memory}
        print("\n".join(report(name, int(batch), times, memory)), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(raw, handle, indent=2)


if __name__ == "__main__":
    main()
