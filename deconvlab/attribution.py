r"""Attribution: a model, an input and a target in, a signal out.

:func:`attribute` seeds the backward pass at the target's output unit(s) and
returns the signal that reaches the input (or a chosen layer) under a backward
rule (:mod:`deconvlab.rules`). ``rule=`` gives one Tensor; ``rules=[...]`` gives a
dict keyed by the rules' canonical names, from ONE forward pass: only the backward
pass is repeated, switching the rule in between. ``rule`` may also be a rule map (a
rule per layer, :mod:`deconvlab.rule_maps`). As in Captum, ``x`` may be a tuple of
tensors (one signal per input) with ``additional_forward_args``, and ``target`` follows
Captum's conventions; ``targets=[...]`` or ``"top5"`` gives a map per target from one
forward pass, stacked in front, ``(T, N, ...)``.

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

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Union, overload

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge

from .checks import (
    Inputs,
    Target,
    Targets,
    as_int,
    check_batch,
    check_batch_dimension,
    check_forward_args,
    check_input,
    check_inputs,
    check_model,
    check_position,
    check_rule_list,
    check_targets,
    forward_checks,
    seed_from_target,
    seeds_from_targets,
)
from .context import active_rule, backward_rule
from .escapes import check_finite_output, check_rule_reached, eager_module
from .observations import input_node, nodes_reaching, warn_untouched
from .recording import Recording, S, Wrt, as_wrt_list, recording
from .relu import RuleSlot
from .rule_maps import RuleChoice, RuleMap, RuleSpec, RuleTable, Selection, as_selection
from .rules import GRADIENT, Rule, RuleLike

__all__ = ["Recording", "attribute", "explain_rules", "project", "record"]

Position = Union[None, str, tuple[int, ...]]
Layer = Union[str, nn.Module, None]


def select_rules(
    rule: RuleSpec | None, rules: Sequence[RuleSpec] | None, default: str
) -> tuple[dict[str, Selection], bool]:
    """``{canonical name: Rule or RuleMap}`` in the caller's order, and whether ``rule=`` was used.

    ``rule=`` takes one rule or rule map (a dict becomes a :class:`~deconvlab.RuleMap`);
    ``rules=`` a list of them (the call then returns a dict keyed by their names).
    """
    if rules is None:
        if rule is not None and not isinstance(rule, (str, Rule, RuleMap, Mapping)):
            raise TypeError(
                f"rule= takes one rule (a name, a deconvlab.Rule or a rule map), got {type(rule).__name__}; "
                "for several rules pass rules=[...], which returns a dict"
            )
        single = as_selection(default if rule is None else rule)
        return {single.name: single}, True
    if rule is not None:
        raise TypeError("give either rule= (one rule, returns a Tensor) or rules= (a list, returns a dict)")
    if isinstance(rules, (str, Rule, RuleMap)):
        raise TypeError(f"rules= takes a list of rules, got {rules!r}; for one rule pass rule={rules!r}")
    items = check_rule_list(rules)
    selected: dict[str, Selection] = {}
    for index, item in enumerate(items):
        resolved = as_selection(item, f"rules[{index}]")
        if resolved.name in selected:
            hint = "; give each rule map its own name=" if isinstance(resolved, RuleMap) else ""
            raise ValueError(f"rules[{index}]: {resolved.name!r} is listed twice in rules={items!r}{hint}")
        selected[resolved.name] = resolved
    if not selected:
        raise ValueError("rules= is an empty list; give at least one rule")
    return selected, False


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(module): name for name, module in model.named_modules()}


def _rule_context(model: nn.Module, rules: dict[str, Selection]) -> tuple[AbstractContextManager, RuleSlot]:
    """A context routing the ReLUs to one slot that can switch between ``rules``, and the slot.

    The gradient alone is plain autograd: with no other rule active in this thread
    there is nothing to route, so the model runs untouched. The context itself does not
    warn: :func:`_warn_untouched` does, knowing the gradient path. Rule maps are matched
    on ``model`` here, before it runs (an entry matching no module raises ``ValueError``).
    """
    slot = RuleSlot(*rules.values())
    if all(rule is GRADIENT for rule in slot.rules) and active_rule() is None:
        return nullcontext(), slot
    return backward_rule(slot, warn=False, module_names=_module_names(model), model=model), slot


def explain_rules(model: nn.Module, x: Tensor, mapping: RuleMap | Mapping) -> RuleTable:
    """Which rule each ReLU call gets under the rule map ``mapping``, from one forward pass.

    Parameters
    ----------
    model, x
        As in :func:`attribute` (run in eval mode, left as found).
    mapping : RuleMap or dict
        The rule map (see :class:`~deconvlab.RuleMap` for the matching).

    Returns
    -------
    RuleTable
        One :class:`~deconvlab.rule_maps.RuleChoice` per ReLU call, in call order: the
        module it ran in, its rule, and the module and entry that placed it (or the default).
        Printed (or shown in a notebook) as a table; ``.counts()`` gives calls per rule.

    Raises
    ------
    TypeError
        ``mapping`` is no rule map or dict (or has a bad key or rule); ``model`` or ``x`` as in
        :func:`attribute`.
    ValueError
        An entry of ``mapping`` matches no module of ``model`` (the message lists its paths).
    """
    if not isinstance(mapping, (RuleMap, Mapping)):
        raise TypeError(
            "mapping must be a rule map (a deconvlab.RuleMap or a dict such as {'features.1*': 'guided'}), "
            f"got {type(mapping).__name__}; with one rule, every ReLU gets that rule"
        )
    chosen = as_selection(mapping, "mapping")
    assert isinstance(chosen, RuleMap)
    check_model(model)
    check_input(x)
    check_batch_dimension(model, x)
    model = eager_module(model)
    try:
        chosen.match(model)
    except ValueError as error:
        raise ValueError(f"mapping: {error}") from None
    context = backward_rule(chosen, warn=False, module_names=_module_names(model), model=model)
    with forward_checks(model, x), recording(model, x, context):
        pass
    assert context.last_seen is not None
    paths = {id(module): path for path, module in model.named_modules(remove_duplicate=False)}
    sites = context.last_seen.sites
    return RuleTable(chosen, tuple(_choice(chosen, paths, call, site) for call, site in enumerate(sites)))


def _choice(chosen: RuleMap, paths: dict[int, str], call: int, site: tuple) -> RuleChoice:
    module, ((index, decider),) = site
    where = "-" if module is None else paths.get(id(module), type(module).__name__)
    decided_by = None if decider is None else paths.get(id(decider), type(decider).__name__)
    return RuleChoice(call, where, chosen.rule_of(index).name, decided_by, chosen.key_text(index))


def _check_path(
    context: AbstractContextManager, model: nn.Module, output: Tensor, wrt: Wrt | tuple[Wrt, ...], what: str
) -> None:
    """Refuse NaN/Inf in ``output`` (named ``what``) and, on the path from it to ``wrt`` (the input
    or a layer), ReLUs that no rule reaches; warn about what the rules left alone there."""
    check_finite_output(output, what)
    if not isinstance(context, backward_rule) or context.only_gradient or context.last_seen is None:
        return
    nodes = [w.node if isinstance(w, GradientEdge) else input_node(w) for w in as_wrt_list(wrt)]
    on_path = nodes_reaching(output, nodes)
    check_rule_reached(on_path, context.rules_text, model)
    warn_untouched(context.last_seen, context.rules_text, on_path=on_path)


@overload
def record(  # type: ignore[overload-overlap]
    model: nn.Module,
    x: S,
    target: Target | None = ...,
    rule: RuleSpec | None = ...,
    layer: None = ...,
    *,
    rules: Sequence[RuleSpec] | None = ...,
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> Recording[S]: ...
@overload
def record(
    model: nn.Module,
    x: Inputs,
    target: Target | None = ...,
    rule: RuleSpec | None = ...,
    layer: Layer = ...,
    *,
    rules: Sequence[RuleSpec] | None = ...,
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> Recording[Tensor]: ...


def record(
    model: nn.Module,
    x: Inputs,
    target: Target | None = None,
    rule: RuleSpec | None = None,
    layer: Layer = None,
    *,
    rules: Sequence[RuleSpec] | None = None,
    targets: Targets | None = None,
    additional_forward_args: object = None,
) -> Recording:
    """Run the forward pass of :func:`attribute` once and keep its graph (same arguments).

    Returns a :class:`~deconvlab.recording.Recording`: ``.signal(name)`` runs one backward
    pass under that rule (one per target with ``targets=``), ``.signals()`` all of them;
    ``.targets`` holds the targets (for ``"topK"``, the classes). Raises as :func:`attribute` does.
    """
    check_model(model)
    inputs = check_inputs(model, x)
    model = eager_module(model)  # torch.compile(model): the module it wraps
    extra = check_forward_args(model, len(inputs), additional_forward_args)
    many = check_targets(target, targets)
    selected, _ = select_rules(rule, rules, default="guided_backprop")
    context, slot = _rule_context(model, selected)
    with forward_checks(model, x), recording(model, x, context, layer, extra=extra) as forward:
        assert forward.output is not None
        check_batch(forward.output, inputs[0], "x[0]" if isinstance(x, tuple) else "x")
        if many is None:
            seed, resolved = seed_from_target(forward.output, target), None  # type: ignore[arg-type]
        else:
            seed, resolved = seeds_from_targets(forward.output, many)
        leaves = forward.leaves if isinstance(x, tuple) else forward.leaf
        wrt = forward.layer.wrt() if forward.layer is not None else leaves
    _check_path(context, model, forward.output, wrt, "the model's output")
    return Recording(slot, selected, forward.output, seed, wrt, resolved)


@overload
def attribute(  # type: ignore[overload-overlap]
    model: nn.Module,
    x: S,
    target: Target | None = ...,
    rule: RuleSpec | None = ...,
    layer: None = ...,
    *,
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> S: ...
@overload
def attribute(  # type: ignore[overload-overlap]
    model: nn.Module,
    x: S,
    target: Target | None = ...,
    rule: None = ...,
    layer: None = ...,
    *,
    rules: Sequence[RuleSpec],
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> dict[str, S]: ...
@overload
def attribute(
    model: nn.Module,
    x: Inputs,
    target: Target | None = ...,
    rule: RuleSpec | None = ...,
    layer: Layer = ...,
    *,
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> Tensor: ...
@overload
def attribute(
    model: nn.Module,
    x: Inputs,
    target: Target | None = ...,
    rule: None = ...,
    layer: Layer = ...,
    *,
    rules: Sequence[RuleSpec],
    targets: Targets | None = ...,
    additional_forward_args: object = ...,
) -> dict[str, Tensor]: ...


def attribute(
    model: nn.Module,
    x: Inputs,
    target: Target | None = None,
    rule: RuleSpec | None = None,
    layer: Layer = None,
    *,
    rules: Sequence[RuleSpec] | None = None,
    targets: Targets | None = None,
    additional_forward_args: object = None,
) -> Any:
    """The signed signal of ``rule`` for ``target``, at the input or at ``layer``.

    Parameters
    ----------
    model : nn.Module
        Any PyTorch model; it is run in eval mode and left in its own mode.
    x : Tensor or tuple of Tensor
        Floating-point input batch, e.g. ``(N, 3, H, W)``; or a tuple of them for a model with
        several inputs, called as ``model(*x)``, each with the same batch size. Not modified.
    target : int, list, tuple or Tensor
        Captum's conventions: an int or 0-d integer tensor (a class for the whole batch); a list
        or 1-D integer tensor (one class per example); a tuple ``(c, i, j)`` indexing one unit of
        an output with more than two dimensions (the same for every example); a list of such
        tuples (one per example); or a floating-point seed tensor shaped like the model's output
        (backpropagated as it is). A class of an output with more than two dimensions is seeded
        at every position.
    rule : str, Rule, RuleMap or dict, default "guided_backprop"
        ``"gradient"``, ``"deconvnet"``, ``"guided_backprop"`` (``"guided"``) or a
        registered rule; or a rule per layer, ``{"features.1*": "guided_backprop"}``
        (see :class:`~deconvlab.RuleMap`).
    layer : str or nn.Module, optional
        Return the signal at this layer's output (a module path such as
        ``"features.10"``, or the module) instead of at the input.
    rules : list of str, Rule, RuleMap or dict, optional
        Several rules instead of ``rule``: one forward pass, a dict of signals.
    targets : list of targets, or "topK", optional
        Several targets instead of ``target``, each as ``target`` takes it (e.g. ``range(10)``),
        or ``"top5"``: the 5 highest-scoring classes of each example, best first. One forward
        pass, one backward pass per target; the classes of ``"topK"`` are
        ``record(...).targets`` (or ``model(x).topk(K, dim=1).indices.T``).
    additional_forward_args : tuple, optional
        Further arguments of the model after the inputs, ``model(*x, *additional_forward_args)``
        (Captum's name); any other value is one argument. Not differentiated.

    Returns
    -------
    Tensor, tuple of Tensor, or a dict of them with ``rules=``
        Signed signal shaped like ``x`` (or like ``layer``'s output), detached; a tuple, one per
        input, when ``x`` is a tuple (but one signal at ``layer``). With ``targets=`` each signal
        gains a leading dimension, one map per target: ``(T, N, ...)``. With ``rules=`` one per
        rule, keyed by the rules' canonical names.

    Raises
    ------
    TypeError
        ``model`` is no ``nn.Module`` (or is TorchScript); ``x`` (or ``x[i]``) is no floating-point
        tensor, or its dtype differs from the model's, or ``x`` is a list; ``target`` is None, a
        string (the message shows how to get its index), a float, a bool, a list of anything but
        ints or tuples of them; ``target`` and ``targets`` both given; ``targets`` is no list nor
        "topK"; ``rule`` or an item of ``rules`` is no rule name or Rule; ``layer`` is no module
        path or module; the model's ``forward`` cannot take ``x`` and ``additional_forward_args``.
    ValueError
        ``x`` has no batch dimension (said so before the model runs, with the fix ``x[None]``) or a
        shape the model cannot take; the inputs of a tuple differ in batch size; ``target`` has the
        wrong length or shape; a tuple ``target`` on an ``(N, C)`` output or with a length other
        than the output's dimensions after the batch; a list ``target`` that may mean a tuple (its
        length is both the batch size and the output's dimensions after the batch); ``"topK"`` on
        an output that is not ``(N, C)`` or with K above its classes; an unknown rule or layer.
    IndexError
        A ``target`` class or index outside the model's outputs.

    Every message names the parameter (an item of ``targets`` as ``targets[k]``); see
    :mod:`deconvlab.checks` for the contract.

    Examples
    --------
    >>> signal = dl.attribute(model, x, 3, rule="deconvnet")                               # doctest: +SKIP
    >>> maps = dl.attribute(model, x, 3, rules=["gradient", "deconvnet", "guided_backprop"])  # doctest: +SKIP
    >>> per_class = dl.attribute(model, x, targets=range(10))        # (10, N, 3, H, W)   # doctest: +SKIP
    >>> image_map, mask_map = dl.attribute(model2, (image, mask), 1)                        # doctest: +SKIP
    """
    recorded = record(
        model,
        x,
        target,
        rule,
        layer,
        rules=rules,
        targets=targets,
        additional_forward_args=additional_forward_args,
    )  # record validates every argument
    signals = recorded.signals()
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
    *,
    additional_forward_args: object = ...,
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
    additional_forward_args: object = ...,
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
    additional_forward_args: object = None,
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
    rule : str, Rule, RuleMap or dict, default "deconvnet"
        Backward rule, or a rule per layer (see :class:`~deconvlab.RuleMap`).
    rules : list of str, Rule, RuleMap or dict, optional
        Several rules instead of ``rule``: one forward pass, a dict of signals.
    additional_forward_args : tuple, optional
        As in :func:`attribute`.

    Returns
    -------
    Tensor, or dict of str to Tensor with ``rules=``
        Signal shaped like ``x``. It is zero for an example whose chosen
        activations are all zero: there is nothing to project.

    Raises
    ------
    TypeError
        As :func:`attribute` for ``model``, ``x``, ``rule``, ``rules`` and ``layer`` (which is
        required) and ``additional_forward_args``; ``channel`` is no integer; ``position`` is neither
        None, ``"max"`` nor a pair of ints.
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
    extra = check_forward_args(model, 1, additional_forward_args)
    selected, single = select_rules(rule, rules, default="deconvnet")
    context, slot = _rule_context(model, selected)
    with forward_checks(model, x), recording(model, x, context, layer, True, extra) as forward:
        assert forward.layer is not None
        activation = forward.layer.checked_output()
        seed = _unit_seed(activation, channel, checked_position)
    _check_path(context, model, activation, forward.leaf, f"layer {forward.layer.name!r}'s output")
    signals = Recording(slot, selected, activation, seed, forward.leaf).signals()
    return next(iter(signals.values())) if single else signals
