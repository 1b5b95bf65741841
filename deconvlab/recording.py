"""The one forward pipeline: run a model the way attribution needs it and keep its graph.

:func:`recording` is shared by :func:`deconvlab.attribute`, :func:`deconvlab.project`
and the TorchRay layer (:mod:`deconvlab.torchray`). It checks the model and the input,
gives the model a fresh leaf that shares the caller's data, runs it in eval mode
with autograd on inside the caller's backward-rule context, optionally records (or
stops at) one layer's output, and leaves the model as it was found: each module's
own mode restored, no hooks left, also when it fails. :class:`Recording` then runs
backward passes over the kept graph, one rule after another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from .checks import check_input, check_model, find_layer
from .context import InPlaceOnLeafError
from .escapes import check_finite_input, eager_module
from .interrupts import Section, critical, deliver_held, interruptible
from .model_state import evaluating, removing
from .relu import RuleSlot
from .rules import Rule

__all__ = ["Forward", "LayerProbe", "Recording", "Wrt", "recording"]

#: What a backward pass differentiates with respect to: a tensor, or the gradient edge of one.
Wrt = Union[Tensor, GradientEdge]


class StopForward(Exception):
    """Raised by a probe to end a forward pass once the layer of interest has run."""


class LayerProbe:
    """Forward hook that records a layer's output (and may stop the forward pass there)."""

    def __init__(self, name: str, module: nn.Module, stop: bool) -> None:
        self.name, self.stop = name, stop
        self.reset()

    def reset(self) -> None:
        self.calls = 0
        self.output: Tensor | None = None
        self.edge: GradientEdge | None = None

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        self.calls += 1
        if not isinstance(output, Tensor):
            raise TypeError(
                f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                "choose a layer whose output is a single tensor"
            )
        self.output = output
        if output.requires_grad:
            # The gradient w.r.t. this very value, even if a later in-place op overwrites it.
            self.edge = get_gradient_edge(output)
        if self.stop:
            raise StopForward

    def checked_output(self) -> Tensor:
        """The layer's output; refuses a layer that did not run, or ran more than once."""
        if self.calls == 0 or self.output is None:
            raise RuntimeError(f"layer {self.name!r} did not run during the forward pass")
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} ran {self.calls} times in one forward pass, so its output "
                "is ambiguous; choose a module that runs once"
            )
        return self.output

    def wrt(self) -> Wrt:
        """What to differentiate with respect to: the gradient edge of the layer's output."""
        output = self.checked_output()
        return self.edge if self.edge is not None else output


def input_leaf(x: Tensor) -> Tensor:
    """A fresh leaf that shares ``x``'s data; :func:`run_model` keeps in-place ops off it."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "attribution needs autograd, which torch.inference_mode() disables; "
            "call it outside the inference_mode block"
        )
    leaf = x.clone() if x.is_inference() else x.detach()
    return leaf.requires_grad_(True)


@interruptible  # the user's model runs here: a Ctrl-C stops it at once
def run_model(model: nn.Module, leaf: Tensor, probe: LayerProbe | None = None) -> Tensor:
    """``model(leaf)``; a model that ReLUs its input in place gets a copy (the caller's data is shared)."""
    deliver_held()
    try:
        return model(leaf)
    except RuntimeError as error:  # ours, or autograd's own check (it runs before the write)
        if not isinstance(error, InPlaceOnLeafError) and "leaf Variable that requires grad" not in str(error):
            raise
        if probe is not None:
            probe.reset()  # the aborted pass may have reached the layer
        return model(leaf.clone())


@dataclass
class Forward:
    """What one forward pass recorded.

    Attributes
    ----------
    leaf : Tensor
        The input leaf the graph starts from (shares the caller's data).
    output : Tensor or None
        The model's output; None when the pass stopped at the layer.
    layer : LayerProbe or None
        The probed layer, when one was asked for.
    """

    leaf: Tensor
    output: Tensor | None
    layer: LayerProbe | None


@contextmanager
@critical
def recording(
    model: nn.Module,
    x: Tensor,
    context: AbstractContextManager,
    layer: str | nn.Module | None = None,
    stop_at_layer: bool = False,
) -> Iterator[Forward]:
    """Run ``model`` on ``x`` under ``context`` and yield what the forward pass recorded.

    The block runs inside ``context`` (e.g. a :class:`~deconvlab.backward_rule`), in eval
    mode, with autograd on and the probe in place; all of it is undone on exit.

    Parameters
    ----------
    model, x
        The model and its floating-point input batch (not modified).
    context : context manager
        Entered around the forward pass and the caller's block.
    layer : str or nn.Module, optional
        Record this layer's output (a module path or the module).
    stop_at_layer : bool
        End the forward pass as soon as ``layer`` has run (no model output).
    """
    model = eager_module(model)  # torch.compile(model): the module it wraps, which every rule reaches
    check_model(model)
    check_input(x)
    check_finite_input(x)
    leaf = input_leaf(x)
    with Section(), evaluating(model), removing([]) as handles, torch.enable_grad():
        probe = None
        if layer is not None:
            name, module = find_layer(model, layer)
            probe = LayerProbe(name, module, stop=stop_at_layer)
            # One C-level call: an interrupt cannot fall between registering and keeping the handle.
            handles.extend(map(module.register_forward_hook, [probe]))
        with context:
            output: Tensor | None = None
            try:
                output = run_model(model, leaf, probe)
            except StopForward:
                pass
            if output is None and probe is not None:
                probe.checked_output()  # a pass that ended without reaching the layer is refused here
            yield Forward(leaf, output, probe)


class Recording:
    """One recorded forward pass, ready for a backward pass under any of its rules.

    Made by :func:`deconvlab.record` (and used by :func:`deconvlab.attribute` and
    :func:`deconvlab.project`): the graph is recorded once; :meth:`signal` switches the
    rule and repeats only the backward pass. A slider that changes a rule's parameter
    can call it again and again.
    """

    def __init__(self, slot: RuleSlot, rules: dict[str, Rule], output: Tensor, seed: Tensor, wrt: Wrt):
        self.slot, self.rules = slot, rules
        self.output, self.seed, self.wrt = output, seed, wrt

    @interruptible  # a backward pass: a Ctrl-C stops it at once
    def signal(self, key: str, keep_graph: bool = True) -> Tensor:
        """The signal of the rule listed as ``key``; ``keep_graph=False`` frees the graph after it."""
        deliver_held()
        self.slot.rule = self.rules[key]
        try:
            (signal,) = torch.autograd.grad(self.output, self.wrt, self.seed, retain_graph=keep_graph)
        except RuntimeError as error:
            if "not have been used in the graph" in str(error):
                raise RuntimeError(
                    "the chosen layer (or input) does not influence the model's output"
                ) from error
            raise
        return signal.detach()

    def signals(self) -> dict[str, Tensor]:
        """Every rule's signal, in the caller's order; the graph is freed after the last."""
        keys = list(self.rules)
        return {key: self.signal(key, keep_graph=key != keys[-1]) for key in keys}
