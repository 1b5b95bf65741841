r"""Attribution: a model, an input and a target in, a signal out.

:func:`attribute` seeds the backward pass at the target's output unit(s) and
returns the signal that reaches the input (or a chosen layer) under a backward
rule (:mod:`deconvlab.rules`). With a list of rules the forward pass runs once
and only the backward pass is repeated, switching the rule in between.

:func:`project` is Zeiler and Fergus' view [DECONV]: it seeds the backward pass
at one unit, at the strongest unit of a channel, or at a whole channel of an
intermediate layer, with every other activation set to zero, and returns what
reaches the pixels.

Both leave the model as they found it: eval mode during the call and each
module's own mode restored afterwards, no parameter gradients accumulated, no
hooks left behind, the caller's tensor untouched; also when they fail.

References
----------
.. [DECONV] Zeiler and Fergus, *Visualizing and Understanding Convolutional
   Networks*, ECCV 2014, https://doi.org/10.1007/978-3-319-10590-1_53.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Union, overload

import numpy as np
import torch
from torch import Tensor, nn

from .checks import Target, check_batch, check_input, check_model, find_layer, seed_from_target
from .context import InPlaceOnLeafError, active_rule, backward_rule
from .model_state import evaluating, removing
from .relu import RuleSlot
from .rules import GRADIENT, Rule, RuleLike, get_rule

__all__ = ["Recording", "attribute", "project", "record"]

RuleArg = Union[RuleLike, Sequence[RuleLike]]
Position = Union[None, str, tuple[int, int]]

_get_gradient_edge = getattr(torch.autograd.graph, "get_gradient_edge", None)


class _StopForward(Exception):
    """Raised by a probe to end a forward pass once the layer of interest has run."""


def _resolve_rules(rule: RuleArg) -> tuple[dict[str, Rule], bool]:
    """``{key: Rule}`` in the caller's order, and whether a single rule was asked for."""
    if isinstance(rule, (str, Rule)):
        resolved = get_rule(rule)
        return {resolved.name: resolved}, True
    rules: dict[str, Rule] = {}
    for item in rule:
        key = item if isinstance(item, str) else get_rule(item).name
        if key in rules:
            raise ValueError(f"rule {key!r} is listed twice")
        rules[key] = get_rule(item)
    if not rules:
        raise ValueError("rule is an empty list; give at least one rule")
    return rules, False


class _LayerProbe:
    """Forward hook that records a layer's output (and may stop the forward pass there)."""

    def __init__(self, name: str, module: nn.Module, stop: bool) -> None:
        self.name, self.stop = name, stop
        self.reset()
        self.handle = module.register_forward_hook(self)

    def reset(self) -> None:
        self.calls = 0
        self.output: Tensor | None = None
        self.edge = None

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        self.calls += 1
        if not isinstance(output, Tensor):
            raise TypeError(
                f"layer {self.name!r} returns {type(output).__name__}, not a tensor; "
                "choose a layer whose output is a single tensor"
            )
        self.output = output
        if output.requires_grad and _get_gradient_edge is not None:
            # The gradient w.r.t. this very value, even if a later in-place op overwrites it.
            self.edge = _get_gradient_edge(output)
        if self.stop:
            raise _StopForward

    def target(self) -> object:
        """What to differentiate with respect to."""
        if self.calls == 0:
            raise RuntimeError(f"layer {self.name!r} did not run during the forward pass")
        if self.calls > 1:
            raise RuntimeError(
                f"layer {self.name!r} ran {self.calls} times in one forward pass, so its output "
                "is ambiguous; choose a module that runs once"
            )
        return self.edge if self.edge is not None else self.output


def _input_leaf(x: Tensor) -> Tensor:
    """A fresh leaf that shares ``x``'s data; :func:`run_model` keeps in-place ops off it."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "attribution needs autograd, which torch.inference_mode() disables; "
            "call it outside the inference_mode block"
        )
    leaf = x.clone() if x.is_inference() else x.detach()
    return leaf.requires_grad_(True)


def run_model(model: nn.Module, leaf: Tensor, probe: _LayerProbe | None = None) -> Tensor:
    """``model(leaf)``; a model that ReLUs its input in place gets a copy (the caller's data is shared)."""
    try:
        return model(leaf)
    except RuntimeError as error:  # ours, or autograd's own check (it runs before the write)
        if not isinstance(error, InPlaceOnLeafError) and "leaf Variable that requires grad" not in str(error):
            raise
        if probe is not None:
            probe.reset()  # the aborted pass may have reached the layer
        return model(leaf.clone())


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _rule_context(model: nn.Module, rules: dict[str, Rule]) -> tuple[AbstractContextManager, RuleSlot]:
    """A context routing the ReLUs to one slot that can switch between ``rules``, and the slot.

    The gradient alone is plain autograd: with no other rule active in this thread
    there is nothing to route, so the model runs untouched.
    """
    slot = RuleSlot(*rules.values())
    if all(rule is GRADIENT for rule in slot.rules) and active_rule() is None:
        return nullcontext(), slot
    return backward_rule(slot, module_names=_module_names(model)), slot


class Recording:
    """One recorded forward pass, ready for a backward pass under any of its rules.

    Made by :func:`record` (and used by :func:`attribute` and :func:`project`): the
    graph is recorded once; :meth:`signal` switches the rule and repeats only the
    backward pass. A slider that changes a rule's parameter can call it again and again.
    """

    def __init__(self, slot: RuleSlot, rules: dict[str, Rule], output: Tensor, seed: Tensor, wrt: object):
        self.slot, self.rules = slot, rules
        self.output, self.seed, self.wrt = output, seed, wrt

    def signal(self, key: str, keep_graph: bool = True) -> Tensor:
        """The signal of the rule listed as ``key``; ``keep_graph=False`` frees the graph after it."""
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


def record(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: RuleArg = "guided_backprop",
    layer: str | nn.Module | None = None,
) -> Recording:
    """Run the forward pass of :func:`attribute` once and keep its graph (same arguments)."""
    rules, _ = _resolve_rules(rule)
    check_model(model)
    check_input(x)
    leaf = _input_leaf(x)
    with evaluating(model), removing([]) as handles, torch.enable_grad():
        probe = None
        if layer is not None:
            probe = _LayerProbe(*find_layer(model, layer), stop=False)
            handles.append(probe.handle)
        context, slot = _rule_context(model, rules)
        with context:
            output = run_model(model, leaf, probe)
        check_batch(output, x)
        seed = seed_from_target(output, target)
        wrt = probe.target() if probe is not None else leaf
    return Recording(slot, rules, output, seed, wrt)


@overload
def attribute(
    model: nn.Module, x: Tensor, target: Target, rule: RuleLike = ..., layer: str | nn.Module | None = ...
) -> Tensor: ...
@overload
def attribute(
    model: nn.Module, x: Tensor, target: Target, rule: Sequence[RuleLike], layer: str | nn.Module | None = ...
) -> dict[str, Tensor]: ...


def attribute(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: RuleArg = "guided_backprop",
    layer: str | nn.Module | None = None,
) -> Tensor | dict[str, Tensor]:
    """The signed signal of ``rule`` for ``target``, at the input or at ``layer``.

    Parameters
    ----------
    model : nn.Module
        Any PyTorch model; it is run in eval mode and left in its own mode.
    x : Tensor
        Floating-point input batch, e.g. ``(N, 3, H, W)``. Not modified.
    target : int, sequence of int, or Tensor
        A class for the whole batch, one class per example, or a seed tensor
        shaped like the model's output (backpropagated as it is).
    rule : str, Rule, or list of them
        ``"gradient"``, ``"deconvnet"``, ``"guided_backprop"`` (``"guided"``) or a
        registered rule. A list returns a dict from a single forward pass.
    layer : str or nn.Module, optional
        Return the signal at this layer's output (a module path such as
        ``"features.10"``, or the module) instead of at the input.

    Returns
    -------
    Tensor or dict of str to Tensor
        Signed signal shaped like ``x`` (or like ``layer``'s output), detached.

    Examples
    --------
    >>> maps = dl.attribute(model, x, 3, rule=["gradient", "deconvnet", "guided_backprop"])  # doctest: +SKIP
    """
    signals = record(model, x, target, rule, layer).signals()
    return signals[next(iter(signals))] if isinstance(rule, (str, Rule)) else signals


def _unit_seed(activation: Tensor, channel: int, position: Position) -> Tensor:
    """Zeiler–Fergus seed: the chosen activations, every other one set to zero."""
    if activation.dim() < 2:
        raise ValueError(f"the layer's output has shape {tuple(activation.shape)}; expected (N, C, ...)")
    channels = activation.shape[1]
    if not 0 <= channel < channels:
        raise IndexError(f"channel {channel} is out of range for a layer with {channels} channels")
    feature = activation[:, channel].detach()
    seed = torch.zeros_like(activation)
    if position is None or feature.dim() == 1:
        seed[:, channel] = feature
        return seed
    batch = feature.shape[0]
    flat = feature.reshape(batch, -1)
    if isinstance(position, str):
        if position != "max":
            raise ValueError(f"position must be None, 'max' or (i, j), got {position!r}")
        index = flat.argmax(dim=1)
    else:
        spatial = tuple(feature.shape[1:])
        if len(position) != len(spatial) or any(not 0 <= p < s for p, s in zip(position, spatial)):
            raise IndexError(f"position {tuple(position)} is outside the feature map of size {spatial}")
        flat_index = int(np.ravel_multi_index(tuple(int(p) for p in position), spatial))
        index = torch.full((batch,), flat_index, device=flat.device)
    seed_channel = torch.zeros_like(flat)
    seed_channel.scatter_(1, index[:, None], flat.gather(1, index[:, None]))
    seed[:, channel] = seed_channel.view_as(feature)
    return seed


def project(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    channel: int,
    position: Position = None,
    rule: RuleArg = "deconvnet",
) -> Tensor | dict[str, Tensor]:
    """Project activations of one channel of ``layer`` back to pixel space [DECONV].

    Parameters
    ----------
    model, x
        As in :func:`attribute`.
    layer : str or nn.Module
        The layer whose output is projected.
    channel : int
        The channel (or unit of a linear layer).
    position : None, "max" or (i, j)
        ``None``: the whole feature map; ``"max"``: its strongest unit in each
        example (Zeiler and Fergus' choice); ``(i, j)``: that unit. Every other
        activation is set to zero and the kept ones seed the backward pass.
    rule : str, Rule, or list of them
        Backward rule; ``"deconvnet"`` by default.

    Returns
    -------
    Tensor or dict of str to Tensor
        Signal shaped like ``x``. It is zero for an example whose chosen
        activations are all zero: there is nothing to project.
    """
    rules, single = _resolve_rules(rule)
    check_model(model)
    check_input(x)
    leaf = _input_leaf(x)
    with evaluating(model), removing([]) as handles, torch.enable_grad():
        probe = _LayerProbe(*find_layer(model, layer), stop=True)
        handles.append(probe.handle)
        context, slot = _rule_context(model, rules)
        with context:
            try:
                run_model(model, leaf, probe)
            except _StopForward:
                pass
        probe.target()
        activation = probe.output
        seed = _unit_seed(activation, channel, position)
    signals = Recording(slot, rules, activation, seed, leaf).signals()
    return signals[next(iter(signals))] if single else signals
