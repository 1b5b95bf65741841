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
from typing import Any, Generic, TypeVar, Union, cast

import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from .checks import check_input, check_model, find_layer
from .context import InPlaceOnLeafError
from .escapes import check_finite_input, eager_module
from .interrupts import Section, critical, deliver_held, interruptible
from .model_state import evaluating, removing
from .relu import RuleSlot
from .rule_maps import Selection

__all__ = ["Forward", "LayerProbe", "Recording", "Wrt", "as_wrt_list", "recording"]

#: What a backward pass differentiates with respect to: a tensor, or the gradient edge of one.
Wrt = Union[Tensor, GradientEdge]
#: A signal: a tensor, or a tuple of them (one per input of a tuple ``x``).
S = TypeVar("S", Tensor, tuple[Tensor, ...])


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
def run_model(
    model: nn.Module, leaf: Tensor | tuple[Tensor, ...], probe: LayerProbe | None = None, extra: tuple = ()
) -> Tensor:
    """``model(*leaves, *extra)``; a model that ReLUs an input in place gets copies (the caller's
    data is shared)."""
    deliver_held()
    leaves = leaf if isinstance(leaf, tuple) else (leaf,)
    try:
        return model(*leaves, *extra)
    except RuntimeError as error:  # ours, or autograd's own check (it runs before the write)
        if not isinstance(error, InPlaceOnLeafError) and "leaf Variable that requires grad" not in str(error):
            raise
        if probe is not None:
            probe.reset()  # the aborted pass may have reached the layer
        return model(*(item.clone() for item in leaves), *extra)


@dataclass
class Forward:
    """What one forward pass recorded.

    Attributes
    ----------
    leaf : Tensor
        The input leaf the graph starts from (shares the caller's data); the first one for
        several inputs.
    output : Tensor or None
        The model's output; None when the pass stopped at the layer.
    layer : LayerProbe or None
        The probed layer, when one was asked for.
    leaves : tuple of Tensor
        One leaf per input (``(leaf,)`` for one input).
    """

    leaf: Tensor
    output: Tensor | None
    layer: LayerProbe | None
    leaves: tuple[Tensor, ...] = ()

    def __post_init__(self) -> None:
        self.leaves = self.leaves or (self.leaf,)


@contextmanager
@critical
def recording(
    model: nn.Module,
    x: Tensor | tuple[Tensor, ...],
    context: AbstractContextManager,
    layer: str | nn.Module | None = None,
    stop_at_layer: bool = False,
    extra: tuple = (),
) -> Iterator[Forward]:
    """Run ``model`` on ``x`` under ``context`` and yield what the forward pass recorded.

    The block runs inside ``context`` (e.g. a :class:`~deconvlab.backward_rule`), in eval
    mode, with autograd on and the probe in place; all of it is undone on exit.

    Parameters
    ----------
    model, x
        The model and its floating-point input batch, or a tuple of them (not modified);
        the model is called as ``model(*x, *extra)``.
    context : context manager
        Entered around the forward pass and the caller's block.
    layer : str or nn.Module, optional
        Record this layer's output (a module path or the module).
    stop_at_layer : bool
        End the forward pass as soon as ``layer`` has run (no model output).
    extra : tuple
        Further arguments of the model, after the inputs; not differentiated.
    """
    model = eager_module(model)  # torch.compile(model): the module it wraps, which every rule reaches
    check_model(model)
    inputs = x if isinstance(x, tuple) else (x,)
    names = [f"x[{i}]" for i in range(len(inputs))] if isinstance(x, tuple) else ["x"]
    for item, name in zip(inputs, names):
        check_input(item, name)
        check_finite_input(item, name)
    leaves = tuple(input_leaf(item) for item in inputs)
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
                output = run_model(model, leaves, probe, extra)
            except StopForward:
                pass
            if output is None and probe is not None:
                probe.checked_output()  # a pass that ended without reaching the layer is refused here
            yield Forward(leaves[0], output, probe, leaves)


def _is_inputs(wrt: Wrt | tuple[Wrt, ...]) -> bool:
    """Whether ``wrt`` is a tuple of inputs (a GradientEdge is a named tuple too)."""
    return isinstance(wrt, tuple) and not isinstance(wrt, GradientEdge)


def as_wrt_list(wrt: Wrt | tuple[Wrt, ...]) -> list[Wrt]:
    """``wrt`` as a list: each input of a tuple, or the one tensor or gradient edge."""
    if isinstance(wrt, tuple) and not isinstance(wrt, GradientEdge):
        return list(wrt)
    return [wrt]


def _zeros(like: Wrt) -> Tensor:
    assert isinstance(like, Tensor)  # only inputs (leaves) can be unused
    return torch.zeros_like(like)


class Recording(Generic[S]):
    """One recorded forward pass, ready for a backward pass under any of its rules.

    Made by :func:`deconvlab.record` (and used by :func:`deconvlab.attribute` and
    :func:`deconvlab.project`): the graph is recorded once; :meth:`signal` switches the
    rule and repeats only the backward pass. A slider that changes a rule's parameter
    can call it again and again.

    Attributes
    ----------
    output : Tensor
        The model's output (or the projected layer's).
    seed : Tensor
        What is backpropagated from ``output``: shaped like it, or, with several targets,
        ``(T, *output.shape)``, one seed per target.
    wrt : Tensor or GradientEdge, or a tuple of them
        What the signal is taken with respect to: the input, each input of a tuple, or a layer.
    targets : list or None
        With several targets (``targets=``), one per leading index of the signals; for
        ``"topK"``, K tensors of shape ``(N,)``, the classes ranked k-th in each example.
    """

    def __init__(
        self,
        slot: RuleSlot,
        rules: dict[str, Selection],
        output: Tensor,
        seed: Tensor,
        wrt: Wrt | tuple[Wrt, ...],
        targets: list | None = None,
    ):
        self.slot, self.rules = slot, rules
        self.output, self.seed, self.wrt = output, seed, wrt
        self.targets = targets

    @interruptible  # a backward pass: a Ctrl-C stops it at once
    def signal(self, key: str, keep_graph: bool = True) -> S:
        """The signal of the rule listed as ``key``; ``keep_graph=False`` frees the graph after it.

        A tensor shaped like ``wrt`` (a tuple for several inputs); with several targets, one
        backward pass per target over the kept graph, stacked along a new first dimension. (One
        batched backward pass, ``is_grads_batched``, gives the same maps but is no faster on
        CPU: ``benchmarks/bench_targets.py``.)
        """
        deliver_held()
        self.slot.rule = self.rules[key]
        if self.targets is None:
            grads = self._grads(self.seed, keep_graph)
        else:
            last = len(self.seed) - 1
            each = [self._grads(seed, keep_graph or t < last) for t, seed in enumerate(self.seed)]
            grads = [torch.stack(per_target) for per_target in zip(*each)]
        return tuple(grads) if _is_inputs(self.wrt) else grads[0]  # type: ignore[return-value]

    @interruptible
    def _grads(self, seed: Tensor, keep_graph: bool) -> list[Tensor]:
        """One backward pass from ``output`` with ``seed``: the gradient at each of ``wrt``."""
        wrt = as_wrt_list(self.wrt)
        try:
            grads = torch.autograd.grad(
                self.output,
                cast(Any, wrt),  # all tensors, or one gradient edge
                seed,
                retain_graph=keep_graph,
                allow_unused=len(wrt) > 1,
            )
        except RuntimeError as error:
            if "not have been used in the graph" in str(error):
                raise RuntimeError(
                    "the chosen layer (or input) does not influence the model's output"
                ) from error
            raise
        if all(grad is None for grad in grads):
            raise RuntimeError("no input in x influences the model's output")
        return [  # an input that does not reach the output: its derivative is zero
            grad.detach() if grad is not None else _zeros(item) for grad, item in zip(grads, wrt)
        ]

    def signals(self) -> dict[str, S]:
        """Every rule's signal, in the caller's order; the graph is freed after the last."""
        keys = list(self.rules)
        return {key: self.signal(key, keep_graph=key != keys[-1]) for key in keys}
