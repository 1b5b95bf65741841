r"""Attribution: a model, an input and a target in, a signal out.

:func:`attribute` seeds the backward pass at the target's output unit(s) and
returns the signal that reaches the input (or a chosen layer) under a backward
rule (:mod:`deconvlab.rules`). ``rule=`` gives one Tensor; ``rules=[...]`` gives a
dict keyed by the rules' canonical names, from ONE forward pass: only the backward
pass is repeated, switching the rule in between.

:func:`project` is Zeiler and Fergus' view [DECONV]: it seeds the backward pass
at one unit, at the strongest unit of a channel, or at a whole channel of an
intermediate layer, with every other activation set to zero, and returns what
reaches the pixels.

Both run on the one forward pipeline of :mod:`deconvlab.recording` and leave the
model as they found it: eval mode during the call and each module's own mode
restored afterwards, no parameter gradients accumulated, no hooks left behind, the
caller's tensor untouched; also when they fail.

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
from torch.autograd.graph import GradientEdge

from .checks import (
    Target,
    as_int,
    check_batch,
    check_batch_dimension,
    check_input,
    check_model,
    check_position,
    check_rule_list,
    check_target,
    forward_checks,
    seed_from_target,
)
from .context import active_rule, backward_rule
from .escapes import check_finite_output, check_rule_reached, eager_module
from .observations import input_node, nodes_reaching, warn_untouched
from .recording import Recording, recording
from .relu import RuleSlot
from .rules import GRADIENT, Rule, RuleLike, get_rule

__all__ = ["Recording", "attribute", "project", "record"]

Position = Union[None, str, tuple[int, ...]]
Layer = Union[str, nn.Module, None]


def select_rules(
    rule: RuleLike | None, rules: Sequence[RuleLike] | None, default: str
) -> tuple[dict[str, Rule], bool]:
    """``{canonical name: Rule}`` in the caller's order, and whether one rule (``rule=``) was asked for.

    ``rule=`` takes one rule; ``rules=`` a list of them (the call then returns a dict).
    """
    if rules is None:
        if rule is not None and not isinstance(rule, (str, Rule)):
            raise TypeError(
                f"rule= takes one rule (a name or a deconvlab.Rule), got {type(rule).__name__}; "
                "for several rules pass rules=[...], which returns a dict"
            )
        single = get_rule(default if rule is None else rule)
        return {single.name: single}, True
    if rule is not None:
        raise TypeError("give either rule= (one rule, returns a Tensor) or rules= (a list, returns a dict)")
    if isinstance(rules, (str, Rule)):
        raise TypeError(f"rules= takes a list of rules, got {rules!r}; for one rule pass rule={rules!r}")
    items = check_rule_list(rules)
    selected: dict[str, Rule] = {}
    for index, item in enumerate(items):
        try:
            resolved = get_rule(item)
        except (TypeError, ValueError) as error:
            raise type(error)(f"rules[{index}]: {error}") from None
        if resolved.name in selected:
            raise ValueError(f"rule {resolved.name!r} is listed twice in rules={items!r}")
        selected[resolved.name] = resolved
    if not selected:
        raise ValueError("rules= is an empty list; give at least one rule")
    return selected, False


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _rule_context(model: nn.Module, rules: dict[str, Rule]) -> tuple[AbstractContextManager, RuleSlot]:
    """A context routing the ReLUs to one slot that can switch between ``rules``, and the slot.

    The gradient alone is plain autograd: with no other rule active in this thread
    there is nothing to route, so the model runs untouched. The context itself does not
    warn: :func:`_warn_untouched` does, knowing the gradient path.
    """
    slot = RuleSlot(*rules.values())
    if all(rule is GRADIENT for rule in slot.rules) and active_rule() is None:
        return nullcontext(), slot
    return backward_rule(slot, warn=False, module_names=_module_names(model)), slot


def _check_path(
    context: AbstractContextManager, model: nn.Module, output: Tensor, wrt: object, what: str
) -> None:
    """Refuse NaN/Inf in ``output`` (named ``what``) and, on the path from it to ``wrt`` (the input
    or a layer), ReLUs that no rule reaches; warn about what the rules left alone there."""
    check_finite_output(output, what)
    if not isinstance(context, backward_rule) or context.only_gradient or context.last_seen is None:
        return
    target = wrt.node if isinstance(wrt, GradientEdge) else input_node(wrt)  # type: ignore[arg-type]
    on_path = nodes_reaching(output, [target])
    check_rule_reached(on_path, context.rules_text, model)
    warn_untouched(context.last_seen, context.rules_text, on_path=on_path)


def record(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: RuleLike | None = None,
    layer: Layer = None,
    *,
    rules: Sequence[RuleLike] | None = None,
) -> Recording:
    """Run the forward pass of :func:`attribute` once and keep its graph (same arguments).

    Returns a :class:`~deconvlab.recording.Recording`: ``.signal(name)`` runs one backward
    pass under that rule, ``.signals()`` all of them. Raises as :func:`attribute` does.
    """
    check_model(model)
    check_input(x)
    check_batch_dimension(model, x)
    check_target(target)
    model = eager_module(model)  # torch.compile(model): the module it wraps
    selected, _ = select_rules(rule, rules, default="guided_backprop")
    context, slot = _rule_context(model, selected)
    with forward_checks(model, x), recording(model, x, context, layer) as forward:
        assert forward.output is not None
        check_batch(forward.output, x)
        seed = seed_from_target(forward.output, target)
        wrt = forward.layer.wrt() if forward.layer is not None else forward.leaf
    _check_path(context, model, forward.output, wrt, "the model's output")
    return Recording(slot, selected, forward.output, seed, wrt)


@overload
def attribute(
    model: nn.Module, x: Tensor, target: Target, rule: RuleLike | None = ..., layer: Layer = ...
) -> Tensor: ...
@overload
def attribute(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: None = ...,
    layer: Layer = ...,
    *,
    rules: Sequence[RuleLike],
) -> dict[str, Tensor]: ...


def attribute(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: RuleLike | None = None,
    layer: Layer = None,
    *,
    rules: Sequence[RuleLike] | None = None,
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
    rule : str or Rule, default "guided_backprop"
        ``"gradient"``, ``"deconvnet"``, ``"guided_backprop"`` (``"guided"``) or a
        registered rule.
    layer : str or nn.Module, optional
        Return the signal at this layer's output (a module path such as
        ``"features.10"``, or the module) instead of at the input.
    rules : list of str or Rule, optional
        Several rules instead of ``rule``: one forward pass, a dict of signals.

    Returns
    -------
    Tensor, or dict of str to Tensor with ``rules=``
        Signed signal shaped like ``x`` (or like ``layer``'s output), detached; with
        ``rules=`` one per rule, keyed by the rules' canonical names.

    Raises
    ------
    TypeError
        ``model`` is no ``nn.Module`` (or is TorchScript); ``x`` is no floating-point tensor, or its
        dtype differs from the model's; ``target`` is None, a string (the message shows how to get
        its index), a float, a bool or a list of anything but ints; ``rule`` or an item of ``rules``
        is no rule name or Rule; ``layer`` is no module path or module.
    ValueError
        ``x`` has no batch dimension (said so before the model runs, with the fix ``x[None]``) or a
        shape the model cannot take; ``target`` has the wrong length or shape; an unknown rule
        or layer.
    IndexError
        A ``target`` class outside the model's outputs.

    Every message names the parameter; see :mod:`deconvlab.checks` for the contract.

    Examples
    --------
    >>> signal = dl.attribute(model, x, 3, rule="deconvnet")                               # doctest: +SKIP
    >>> maps = dl.attribute(model, x, 3, rules=["gradient", "deconvnet", "guided_backprop"])  # doctest: +SKIP
    """
    signals = record(model, x, target, rule, layer, rules=rules).signals()  # record validates the rules
    return next(iter(signals.values())) if rules is None else signals


def _unit_seed(activation: Tensor, channel: int, position: Position) -> Tensor:
    """Zeiler–Fergus seed: the chosen activations, every other one set to zero."""
    if activation.dim() < 2:
        raise ValueError(f"the layer's output has shape {tuple(activation.shape)}; expected (N, C, ...)")
    channels = activation.shape[1]
    if not 0 <= channel < channels:
        raise IndexError(f"channel {channel} is out of range for a layer with {channels} channels")
    feature = activation[:, channel].detach()
    seed = torch.zeros_like(activation)
    if feature.dim() == 1 and isinstance(position, tuple):
        raise ValueError(
            f"position {position} needs a feature map, but the layer's output has shape "
            f"{tuple(activation.shape)} (one value per channel); pass position=None"
        )
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
        if len(position) != len(spatial):
            raise ValueError(
                f"position {tuple(position)} has {len(position)} entries, but the feature map has "
                f"{len(spatial)} dimensions, of size {spatial}"
            )
        if any(not 0 <= p < s for p, s in zip(position, spatial)):
            raise IndexError(f"position {tuple(position)} is outside the feature map of size {spatial}")
        flat_index = int(np.ravel_multi_index(tuple(int(p) for p in position), spatial))
        index = torch.full((batch,), flat_index, device=flat.device)
    seed_channel = torch.zeros_like(flat)
    seed_channel.scatter_(1, index[:, None], flat.gather(1, index[:, None]))
    seed[:, channel] = seed_channel.view_as(feature)
    return seed


@overload
def project(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    channel: int,
    position: Position = ...,
    rule: RuleLike | None = ...,
) -> Tensor: ...
@overload
def project(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    channel: int,
    position: Position = ...,
    rule: None = ...,
    *,
    rules: Sequence[RuleLike],
) -> dict[str, Tensor]: ...


def project(
    model: nn.Module,
    x: Tensor,
    layer: str | nn.Module,
    channel: int,
    position: Position = None,
    rule: RuleLike | None = None,
    *,
    rules: Sequence[RuleLike] | None = None,
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
    rule : str or Rule, default "deconvnet"
        Backward rule.
    rules : list of str or Rule, optional
        Several rules instead of ``rule``: one forward pass, a dict of signals.

    Returns
    -------
    Tensor, or dict of str to Tensor with ``rules=``
        Signal shaped like ``x``. It is zero for an example whose chosen
        activations are all zero: there is nothing to project.

    Raises
    ------
    TypeError
        As :func:`attribute` for ``model``, ``x``, ``rule``, ``rules`` and ``layer`` (which is
        required); ``channel`` is no integer; ``position`` is neither None, ``"max"`` nor a pair of ints.
    ValueError
        As :func:`attribute`; ``position`` is another string or has the wrong length.
    IndexError
        ``channel`` or ``position`` outside the layer's output.
    """
    check_model(model)
    check_input(x)
    check_batch_dimension(model, x)
    if layer is None:
        raise TypeError(
            "layer is None: project needs the layer whose channel is projected, e.g. layer='features.8'"
        )
    channel = as_int("channel", channel)
    checked_position = check_position(position)
    model = eager_module(model)  # torch.compile(model): the module it wraps
    selected, single = select_rules(rule, rules, default="deconvnet")
    context, slot = _rule_context(model, selected)
    with forward_checks(model, x), recording(model, x, context, layer, stop_at_layer=True) as forward:
        assert forward.layer is not None
        activation = forward.layer.checked_output()
        seed = _unit_seed(activation, channel, checked_position)
    _check_path(context, model, activation, forward.leaf, f"layer {forward.layer.name!r}'s output")
    signals = Recording(slot, selected, activation, seed, forward.leaf).signals()
    return next(iter(signals.values())) if single else signals
