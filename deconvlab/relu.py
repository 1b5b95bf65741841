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

import torch
from torch import Tensor

from .rules import Rule

__all__ = ["RuleReLU", "RuleSlot", "relu_with_rule"]


class RuleSlot:
    """The rules that the ReLUs recorded under it may use, and the one they use now (``rule``)."""

    __slots__ = ("rule", "rules", "sign_only")

    def __init__(self, *rules: Rule) -> None:
        self.rules = rules
        self.rule = rules[0]
        # Fixed at creation: decides what the forward pass saves for the backward pass.
        self.sign_only = all(rule.sign_only for rule in rules)


def _check_rule_output(rule: Rule, result: object, p: Tensor) -> Tensor:
    if not isinstance(result, Tensor) or result.shape != p.shape:
        got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
        raise RuntimeError(
            f"rule {rule.name!r}: backward(x, p) must return a tensor shaped like p "
            f"{tuple(p.shape)}, got {got}"
        )
    return result.to(p.dtype)


class RuleReLU(torch.autograd.Function):
    """ReLU forward; backward ``ReLU*(x, p)`` of the rule held by a :class:`RuleSlot`."""

    @staticmethod
    def forward(ctx, x: Tensor, slot: RuleSlot, inplace: bool) -> Tensor:
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

    @staticmethod
    def backward(ctx, p: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        rule = ctx.slot.rule
        return _check_rule_output(rule, rule.backward(x, p), p), None, None


def relu_with_rule(x: Tensor, rule: Rule | RuleSlot, inplace: bool = False) -> Tensor:
    """``relu(x)`` whose backward pass follows ``rule``."""
    slot = rule if isinstance(rule, RuleSlot) else RuleSlot(rule)
    return RuleReLU.apply(x, slot, inplace)
