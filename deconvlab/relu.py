r"""A ReLU whose forward is the ordinary ReLU and whose backward follows a rule.

The forward pass is untouched: :math:`\max(x, 0)`, computed in place when the
caller asked for in-place, so code that relies on the side effect still works.
The backward pass returns :math:`\operatorname{ReLU}^*(x, p)` of the rule (see
:mod:`deconvlab.rules`) instead of the gradient.

The rule is read from a :class:`RuleSlot` when the backward pass runs, not when
the forward pass runs. This is what lets :func:`deconvlab.attribute` compute all
three rules from a single forward pass: the graph is recorded once and the slot
is switched between backward passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

import torch
from torch import Tensor

from .rules import BUILTIN_RULES, Rule

if TYPE_CHECKING:  # rule_maps builds on this module; only the type is needed here
    from .rule_maps import Selection

__all__ = ["FuncRuleReLU", "RuleReLU", "RuleSlot", "SiteSlot", "relu_with_rule"]


class RuleSlot:
    """The rules that the ReLUs recorded under it may use, and the one they use now (``rule``).

    A selection may also be a :class:`~deconvlab.RuleMap`: the ReLUs recorded under such
    a slot read their rule from a :class:`SiteSlot` instead.
    """

    __slots__ = ("rule", "rules", "sign_only")

    def __init__(self, *rules: Selection) -> None:
        self.rules = rules
        self.rule = rules[0]
        # Fixed at creation: decides what the forward pass saves for the backward pass.
        self.sign_only = all(rule.sign_only for rule in rules)


class SiteSlot:
    """What one ReLU under a rule map reads: its own rule for each selection of ``slot``.

    ``by_selection`` maps ``id(selection)`` (a Rule or a RuleMap of ``slot.rules``) to the
    rule this ReLU gets when ``slot.rule`` is that selection.
    """

    __slots__ = ("by_selection", "sign_only", "slot")

    def __init__(self, slot: RuleSlot, by_selection: dict[int, Rule]) -> None:
        self.slot, self.by_selection = slot, by_selection
        self.sign_only = all(rule.sign_only for rule in by_selection.values())

    @property
    def rule(self) -> Rule:
        """The rule of this ReLU under the slot's current selection."""
        return self.by_selection[id(self.slot.rule)]


#: What a ReLU's backward reads its rule from.
Slot = Union[RuleSlot, SiteSlot]


_BUILTIN_IDS = frozenset(id(rule) for rule in BUILTIN_RULES)


def _check_rule_output(rule: Rule, result: object, p: Tensor) -> Tensor:
    if not isinstance(result, Tensor) or result.shape != p.shape:
        got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise RuntimeError(
            f"rule {rule.name!r}: backward(x, p) must return a tensor shaped like p "
            f"{tuple(p.shape)}, got {got}"
        )
    return result.to(p.dtype)


def _backward(ctx: Any, p: Tensor) -> tuple[Tensor, None, None]:
    (x,) = ctx.saved_tensors
    rule = ctx.slot.rule
    # A user rule gets its own p: p may be the seed, shared by the rules of one call, or the
    # signal of a sibling branch, which a rule writing into p would corrupt. Built-ins never do.
    p_for_rule = p if id(rule) in _BUILTIN_IDS else p.clone()
    return _check_rule_output(rule, rule.backward(x, p_for_rule), p), None, None


class RuleReLU(torch.autograd.Function):
    """ReLU forward; backward ``ReLU*(x, p)`` of the rule held by a :class:`RuleSlot`.

    Use it through :func:`relu_with_rule`, which picks :class:`FuncRuleReLU` inside
    ``torch.func`` transforms.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, slot: Slot, inplace: bool) -> Tensor:
        # Sign-only rules get relu(x): same [x > 0], and autograd keeps it anyway.
        saved_input = None if slot.sign_only else (x.clone() if inplace else x)
        if inplace:
            ctx.mark_dirty(x)
            out = torch.relu_(x)
        else:
            out = torch.relu(x)
        ctx.save_for_backward(out if saved_input is None else saved_input)
        ctx.slot = slot
        return out

    backward = staticmethod(_backward)


def _relu(x: Tensor, slot: Slot, inplace: bool) -> Tensor:
    if inplace and not slot.sign_only:  # refused before writing
        raise ValueError("FuncRuleReLU in place would overwrite x, which this rule reads: use relu_with_rule")
    return torch.relu_(x) if inplace else torch.relu(x)


def _setup(ctx: Any, inputs: tuple[Tensor, Slot, bool], output: Tensor) -> None:
    x, slot, inplace = inputs
    if inplace:
        ctx.mark_dirty(x)
    ctx.save_for_backward(output if slot.sign_only else x)
    ctx.slot = slot


class FuncRuleReLU(torch.autograd.Function):
    """:class:`RuleReLU` for ``torch.func`` transforms (vmap, grad, jacrev, vjp): exact there too.

    They need the ``setup_context`` style and a vmap rule, which make each call some 30 us
    slower (PyTorch binds the arguments with ``inspect``), so other calls keep RuleReLU.
    """

    forward = staticmethod(_relu)
    setup_context = staticmethod(_setup)
    backward = staticmethod(_backward)

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, None, None], x: Tensor, slot: Slot, inplace: bool
    ) -> tuple[Tensor, int | None]:
        # Rules are elementwise: the batch dimension is one more dimension, the rule applies as it is.
        return FuncRuleReLU.apply(x, slot, inplace), in_dims[0]


def relu_with_rule(x: Tensor, rule: Rule | Slot, inplace: bool = False) -> Tensor:
    """``relu(x)`` (in place with ``inplace=True``) whose backward pass follows ``rule``."""
    slot = RuleSlot(rule) if isinstance(rule, Rule) else rule
    # Private PyTorch API, the test Function.apply itself makes; no public equivalent
    # (tests/test_pytorch_private_api.py checks it).
    if not torch._C._are_functorch_transforms_active():
        return RuleReLU.apply(x, slot, inplace)
    if inplace and not slot.sign_only:
        # The rule reads the true x, which relu_ overwrites: run on a copy, write the result back.
        return x.copy_(FuncRuleReLU.apply(x.clone(), slot, False))
    return FuncRuleReLU.apply(x, slot, inplace)
