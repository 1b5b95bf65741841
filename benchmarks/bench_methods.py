"""Cost of the research features against the calls they replace (issue 11's targets).

For each model (the course's trained teaching CNN on 64 px inputs, or a random-init torchvision
model on 224 px, or ``name@side`` pixels; CPU) this times, each against its own baseline:

* ``rule map ÷ one rule``: ``attribute(rule=RuleMap(...))`` (guided backprop in the upper half
  of the network, the gradient below) against ``attribute(rule="guided_backprop")``; target ≤ 1.05;
* ``SmoothGrad 16 ÷ 16 calls``: ``smoothgrad(samples=16)`` (noisy copies batched) against
  sixteen ``attribute`` calls on noisy copies; target ≤ 0.8;
* ``Guided Grad-CAM ÷ guided backprop``: ``guided_grad_cam`` (one forward pass for both
  factors) against ``attribute(rule="guided_backprop")``; target ≤ 1.1.

Maps for many targets from one forward pass are timed by ``bench_targets.py``.

The house style of ``bench_rules.py``: after a warm-up, every round runs each method once in a
fresh random order and each ratio is taken within the round; the table gives the median of the
per-round ratios with a 95 % bootstrap interval, for wall and process CPU time, from the quiet
rounds (other processes below ``--quiet`` of the CPUs) when there are at least 5 of them.

Usage::

    python benchmarks/bench_methods.py                 # teaching:1 resnet18:1 vgg16:1, 15 rounds, 2 threads
    python benchmarks/bench_methods.py --quick         # CI-sized: resnet18:1, 5 rounds
    python benchmarks/bench_methods.py --models resnet18@64:1 resnet18@112:1   # smaller inputs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_rules import (
    MIN_QUIET,
    TARGET,
    add_round_options,
    architecture,
    build,
    clock,
    pixels,
    plain_autograd,
    quiet_rounds,
    ratio,
    start_rounds,
    time_table,
)

import deconvlab as dl

SAMPLES = 16
#: (timed method, its baseline, target ratio)
COMPARISONS = [
    ("dl:rule map", "dl:guided_backprop", 1.05),
    ("dl:smoothgrad 16", "dl:16 calls", 0.8),
    ("dl:guided_grad_cam", "dl:guided_backprop", 1.1),
]
#: Grad-CAM's layer (the last convolutional block) and the rule map's upper half, guided there.
LAYERS = {
    "teaching": ("features.11", ["features.[7-9]", "features.1[0-3]"]),
    "resnet18": ("layer4", ["layer3*", "layer4*"]),
    "vgg16": ("features.28", ["features.1[6-9]", "features.2?"]),
}


def noisy_copies(x: torch.Tensor) -> list[torch.Tensor]:
    """The sixteen noisy inputs of the unbatched baseline (noise level 0.15 of the range)."""
    generator = torch.Generator().manual_seed(0)
    sigma = 0.15 * (x.amax() - x.amin())
    return [x + sigma * torch.randn(x.shape, generator=generator) for _ in range(SAMPLES)]


def methods(
    name: str, model: torch.nn.Module, x: torch.Tensor
) -> dict[str, Callable[[torch.Tensor], object]]:
    layer, upper = LAYERS[architecture(name)]
    guided_above = dl.RuleMap({pattern: "guided_backprop" for pattern in upper}, default="gradient")
    copies = noisy_copies(x)
    return {
        "dl:guided_backprop": lambda x: dl.attribute(model, x, TARGET, rule="guided_backprop"),
        "dl:rule map": lambda x: dl.attribute(model, x, TARGET, rule=guided_above),
        "dl:smoothgrad 16": lambda x: dl.smoothgrad(
            model, x, TARGET, rule="guided_backprop", samples=SAMPLES
        ),
        "dl:16 calls": lambda x: [
            dl.attribute(model, copy, TARGET, rule="guided_backprop") for copy in copies
        ],
        "dl:guided_grad_cam": lambda x: dl.guided_grad_cam(model, x, TARGET, layer),
    }


def time_methods(name: str, batch: int, args: argparse.Namespace) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Seconds per round and method (rounds, clocks), interleaved; and the other processes' load."""
    model, x = build(name, batch)
    return time_table(methods(name, model, x), x, args)


def per_example_seconds(name: str, sizes: tuple[int, ...] = (1, 4, 16), rounds: int = 3) -> list[str]:
    """What batching alone saves, the floor of SmoothGrad's batched noisy copies: seconds per
    example at each batch size (best of ``rounds``) of guided backprop through ``attribute``, and
    of plain autograd's gradient without deconvlab."""
    model, x = build(name, 1)
    runs = {
        "guided backprop (attribute)": lambda b: dl.attribute(model, b, TARGET, rule="guided_backprop"),
        "plain autograd, no deconvlab": lambda b: plain_autograd(model, b),
    }
    lines = []
    for label, run in runs.items():
        times = []
        for size in sizes:
            batch = x.expand(size, *x.shape[1:]).contiguous()
            run(batch)  # warm-up
            best = min(clock(run, batch)[0] for _ in range(rounds))
            times.append(f"{best / size * 1000:.1f} ms at batch {size}")
        lines.append(f"{label} per example, batched: {', '.join(times)}")
    return lines


def report(
    name: str, batch: int, samples: dict[str, np.ndarray], load: np.ndarray, quiet: float
) -> list[str]:
    used = quiet_rounds(samples, load, quiet)
    if used is None:
        used, basis = samples, f"all {len(load)} rounds, LOADED: fewer than {MIN_QUIET} quiet ones"
    else:
        basis = f"{len(next(iter(used.values())))} quiet rounds of {len(load)}"
    lines = [
        f"\n### {name}, batch {batch}, {pixels(name)} px, "
        f"{torch.get_num_threads()} threads; {basis} "
        f"(other processes used a median {np.median(load):.0%} of the CPUs)",
        "",
        "| comparison | median wall s | ratio, wall [95 % CI] | ratio, CPU [95 % CI] | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, base, target in COMPARISONS:
        (wall, low, high), (cpu, cpu_low, cpu_high) = ratio(used, key, base=base)
        seconds = np.median(used[key][:, 0])
        verdict = "met" if high <= target else ("not met" if low > target else "undecided")
        lines.append(
            f"| {key[3:]} ÷ {base[3:]} | {seconds:.3f} | {wall:.3f} [{low:.3f}, {high:.3f}] "
            f"| {cpu:.3f} [{cpu_low:.3f}, {cpu_high:.3f}] | ≤ {target} ({verdict}) |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="*", help="name:batch pairs, default: teaching:1 resnet18:1 vgg16:1"
    )
    add_round_options(parser, "resnet18:1, 5 rounds, 1 warm-up")
    args = parser.parse_args()
    start_rounds(args, ["teaching:1", "resnet18:1", "vgg16:1"], ["resnet18:1"])
    for spec in args.models:
        name, batch = spec.split(":")
        samples, load = time_methods(name, int(batch), args)
        print("\n".join(report(name, int(batch), samples, load, args.quiet)), flush=True)
        print("\n" + "\n".join(per_example_seconds(name)), flush=True)


if __name__ == "__main__":
    main()
