"""Where a rule's extra time goes: ``dl.attribute`` vs the context by hand vs plain autograd.

Three kinds of figures, from the least to the most sensitive to load from other processes:

1. counts per forward pass: calls that reach a torch function mode, ReLU calls,
   ``nn.Module`` calls (deterministic);
2. unit costs, best of many repeats: one trip through deconvlab's mode, one routed
   ReLU's Python overhead (forward + backward, tiny tensor), deconvlab's global module
   hooks if it has them, each rule's backward kernels on the model's real ReLU shapes,
   and ``attribute``'s bookkeeping; multiplied by the counts they give each suspect's
   cost per map, in ms and in % of plain autograd;
3. whole maps, split at the model's own forward (a pre-hook and a hook on the top
   module) into setup, forward, and the rest (seed, backward, clean-up), interleaved
   in a random order per round: medians, and medians of per-round differences to
   plain autograd.

Unit costs are measured hot, in a loop; inside a real pass the same Python paths run
cold, between large kernels, and cost about two to three times as much (compare the
``Δ`` columns of 3 on a quiet machine). Read 2 as where the time goes, 3 as how much.

With ``--threads 1`` (the default here) all torch work runs in the calling thread, so
its CPU time (``time.thread_time``) leaves out the time spent descheduled by other
load. With more threads the clock is wall time: process CPU time would count the idle
torch thread's spin-waiting, which grows with load.

Usage::

    python benchmarks/profile_overhead.py                       # resnet18:4, 1 thread
    python benchmarks/profile_overhead.py --models vgg16:2 alexnet:8 --rounds 20
    python benchmarks/profile_overhead.py --threads 2 --cprofile
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import os
import pstats
import random
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch.overrides import TorchFunctionMode

import deconvlab as dl
from deconvlab import model_state

try:  # deconvlab's record of what a rule left untouched (global module hooks, graph walk)
    from deconvlab.observations import Observations, input_node, nodes_reaching
except ImportError:  # older versions
    Observations = None

TARGET = 3
RULES = ("gradient", "deconvnet", "guided_backprop")
CLOCK = time.thread_time  # main() picks time.perf_counter when torch uses several threads


def build(name: str, batch: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """Random-init torchvision model in eval mode and a random 224 px batch."""
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval(), torch.randn(batch, 3, 224, 224)


def best(run: Callable[[], object], number: int = 100, repeat: int = 15) -> float:
    """Best-of-``repeat`` seconds per call of ``run`` on ``CLOCK`` (timeit style; robust to load)."""
    times = []
    for _ in range(repeat):
        start = CLOCK()
        for _ in range(number):
            run()
        times.append((CLOCK() - start) / number)
    return min(times)


def counts(model: torch.nn.Module, x: torch.Tensor) -> tuple[dict[str, int], list[torch.Size]]:
    """Per forward pass: calls through a mode (by name), ReLU calls, module calls; ReLU output shapes."""
    calls: collections.Counter[str] = collections.Counter()
    shapes, modules = [], []

    class Counting(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", str(func))
            calls[name] += 1
            out = func(*args, **(kwargs or {}))
            if name.startswith("relu"):
                shapes.append(out.shape)
            return out

    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: modules.append(m))
    try:
        with torch.no_grad(), Counting():
            model(x)
    finally:
        hook.remove()
    tally = {"mode calls": sum(calls.values()), "relu calls": len(shapes), "module calls": len(modules)}
    return {**tally, **dict(calls.most_common(6))}, shapes


def unit_costs(
    model: torch.nn.Module, x: torch.Tensor, tally: dict[str, int], shapes: list[torch.Size]
) -> dict[str, tuple[float, int]]:
    """Seconds per unit and units per map of each suspect."""
    cost = {}
    tiny, weight = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 1, 1)
    conv = lambda: F.conv2d(tiny, weight)  # noqa: E731
    with dl.backward_rule("guided_backprop", warn=False):
        trip = best(conv, 1000)
    cost["one trip through the mode"] = (trip - best(conv, 1000), tally["mode calls"])

    leaf = torch.randn(1, 8, requires_grad=True)

    def relu_pass(rule: str | None) -> Callable[[], object]:
        def run() -> object:
            with dl.backward_rule(rule, warn=False) if rule else nullcontext():
                out = torch.relu_(leaf * 1)
            return torch.autograd.grad(out, leaf, torch.ones_like(out))

        return run

    base, passthrough = best(relu_pass(None), 300), best(relu_pass("gradient"), 300)
    routed = best(relu_pass("guided_backprop"), 300) - passthrough
    cost["routed ReLU vs autograd's, fwd + bwd Python"] = (routed, tally["relu calls"])
    cost["context enter + exit"] = (passthrough - base - 2 * cost["one trip through the mode"][0], 1)
    if Observations is not None:
        identity, seen = torch.nn.Identity(), Observations()
        bare = best(lambda: identity(tiny), 1000)
        seen.track_modules()
        try:
            hooked = best(lambda: identity(tiny), 1000)
        finally:
            seen.stop_tracking()
        cost["module call under deconvlab's global hooks"] = (hooked - bare, tally["module calls"])
        start = x[:1].clone().requires_grad_(True)
        with dl.backward_rule("guided_backprop", warn=False):
            output = model(start)
        cost["attribute: graph walk for the warnings"] = (
            best(lambda: nodes_reaching(output, [input_node(start)]), 10),
            1,
        )

    tensors = [(torch.randn(shape), torch.randn(shape).clamp_(min=0)) for shape in shapes]
    kernels = {
        "autograd ReLU backward (threshold_backward)": lambda p, out: torch.ops.aten.threshold_backward(
            p, out, 0
        )
    }
    for name in RULES[1:]:
        rule = dl.get_rule(name)
        kernels[f"{name} backward kernels"] = lambda p, out, rule=rule: rule.backward(out, p)
    for label, kernel in kernels.items():
        cost[label] = (sum(best(lambda k=kernel, p=p, o=o: k(p, o), 3, 9) for p, o in tensors), 1)

    def evaluating() -> None:
        with model_state.evaluating(model):
            pass

    cost["attribute: module-name dict"] = (best(lambda: {id(m): n for n, m in model.named_modules()}), 1)
    cost["attribute: save + restore every module's mode"] = (best(evaluating), 1)
    return cost


def variants(model: torch.nn.Module) -> dict[str, Callable[[torch.Tensor], object]]:
    """plain autograd; each rule by hand (``with backward_rule``) and through ``attribute``."""

    def seeded(output: torch.Tensor) -> torch.Tensor:
        seed = torch.zeros_like(output)
        seed[:, TARGET] = 1
        return seed

    def plain(x: torch.Tensor) -> torch.Tensor:
        leaf = x.detach().requires_grad_(True)
        output = model(leaf)
        return torch.autograd.grad(output, leaf, seeded(output))[0]

    def by_hand(rule: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            leaf = x.detach().requires_grad_(True)
            with dl.backward_rule(rule):
                output = model(leaf)
                return torch.autograd.grad(output, leaf, seeded(output))[0]

        return run

    table = {"plain": plain}
    for rule in RULES:
        table[f"by hand: {rule}"] = by_hand(rule)
        table[f"attribute: {rule}"] = lambda x, rule=rule: dl.attribute(model, x, TARGET, rule=rule)
    return table


def phases(model: torch.nn.Module, x: torch.Tensor, rounds: int) -> dict[str, np.ndarray]:
    """Seconds of (setup, forward, rest) per round and variant, interleaved in a random order."""
    clock, stamps = CLOCK, []
    hooks = [
        model.register_forward_pre_hook(lambda *_: stamps.append(clock())),
        model.register_forward_hook(lambda *_: stamps.append(clock())),
    ]
    table = variants(model)
    rows: dict[str, list[list[float]]] = {key: [] for key in table}
    order, shuffle = list(table), random.Random(0).shuffle
    try:
        for round_ in range(rounds + 2):  # two warm-up rounds
            shuffle(order)
            for key in order:
                gc.collect()
                gc.disable()
                stamps.clear()
                start = clock()
                table[key](x)
                end = clock()
                gc.enable()
                if round_ >= 2:
                    rows[key].append([stamps[0] - start, stamps[1] - stamps[0], end - stamps[1]])
    finally:
        for hook in hooks:
            hook.remove()
    return {key: np.array(values) for key, values in rows.items()}


def print_report(cost: dict[str, tuple[float, int]], samples: dict[str, np.ndarray]) -> None:
    """Unit costs per map and the whole-map table, in Markdown."""
    plain = samples["plain"].sum(axis=1)
    floor = np.median(plain)
    print(
        f"\nplain autograd: {floor * 1e3:.1f} ms per map ({CLOCK.__name__})\n\n"
        "| suspect | unit ms | × per map | ms per map | % of plain |\n|---|---:|---:|---:|---:|"
    )
    for label, (seconds, units) in cost.items():
        print(
            f"| {label} | {seconds * 1e3:.4f} | {units} | {seconds * units * 1e3:.3f} "
            f"| {100 * seconds * units / floor:.2f} % |"
        )
    print(
        "\n| variant | setup ms | forward ms | backward + rest ms | ÷ plain (median per round) "
        "| Δ forward ms | Δ backward + rest ms |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for key, values in samples.items():
        setup, forward, rest = np.median(values, axis=0) * 1e3
        ratio = np.median(values.sum(axis=1) / plain)
        d_forward, d_rest = np.median(values[:, 1:] - samples["plain"][:, 1:], axis=0) * 1e3
        print(
            f"| {key} | {setup:.2f} | {forward:.1f} | {rest:.1f} | {ratio:.3f} "
            f"| {d_forward:+.1f} | {d_rest:+.1f} |"
        )


def main() -> None:
    global CLOCK
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=["resnet18:4"])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cprofile", action="store_true", help="also print cProfile of attribute")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    CLOCK = time.thread_time if args.threads == 1 else time.perf_counter
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), deconvlab from "
        f"{os.path.dirname(dl.__file__)}; load average {os.getloadavg()[0]:.2f}"
    )
    for spec in args.models:
        name, batch = spec.split(":")
        model, x = build(name, int(batch))
        tally, shapes = counts(model, x)
        print(f"\n## {name}, batch {batch}\n\nper forward pass: {tally}")
        cost = unit_costs(model, x, tally, shapes)
        print_report(cost, phases(model, x, args.rounds))
        if args.cprofile:
            profile = cProfile.Profile()
            for _ in range(3):
                profile.runcall(dl.attribute, model, x, TARGET)
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
