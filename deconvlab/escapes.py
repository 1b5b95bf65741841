"""Where a rule cannot reach: find it and refuse, rather than return a wrong map.

A backward rule reaches a ReLU only when that ReLU runs, in the thread that opened the
rule, as an ordinary Python-level call (see :mod:`deconvlab.context`). Some features
run ReLUs elsewhere, and the map they give looks just as plausible as a right one:

=================================  ===============================================
feature                            what deconvlab does under a rule
=================================  ===============================================
``torch.compile``                  :func:`deconvlab.attribute` runs the module that
                                   ``torch.compile(model)`` wraps (:func:`eager_module`)
                                   and refuses compiled submodules; inside
                                   ``backward_rule``, each ReLU leaves the compiled graph
                                   (a graph break), so the rule is exact. Where PyTorch
                                   traces a ReLU instead (PyTorch 2.2, ``torch.export``),
                                   :func:`refuse_traced` raises.
TorchScript submodules             refused (:func:`check_rule_reached`)
``torch.func`` (vmap, grad, ...)   exact: :class:`~deconvlab.relu.RuleReLU` has a vmap rule
checkpointing, ``use_reentrant``   ``False``: exact. ``True``: refused, it recomputes its
                                   segment during the backward pass, outside the rule
ReLUs in worker threads            refused (:func:`check_rule_reached`)
NaN or Inf in the input or output  refused (:func:`check_finite_input`, ...)
=================================  ===============================================

:func:`check_rule_reached` looks at the autograd graph that a forward pass recorded
(public API: ``grad_fn``, ``next_functions``, ``name()``): a native ReLU backward node
on the gradient path means a ReLU escaped the rule, and a compiled, TorchScript or
reentrant-checkpoint node is a backward pass that no rule can enter.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import torch
from torch import Tensor, nn

# Private PyTorch classes, with no public equivalent: the tensors that torch.compile (AOT
# autograd), torch.export and make_fx trace with. tests/test_pytorch_private_api.py checks them.
from torch._subclasses.fake_tensor import FakeTensor
from torch._subclasses.functional_tensor import FunctionalTensor

__all__ = [
    "NonFiniteError",
    "NonFiniteOutputError",
    "RuleNotAppliedError",
    "check_finite_input",
    "check_finite_output",
    "check_rule_reached",
    "compiling",
    "eager_module",
    "node_kind",
    "refuse_traced",
    "scripted_submodules",
]


class RuleNotAppliedError(RuntimeError):
    """Some ReLU on the gradient path does not get the rule: the map would be wrong."""


class NonFiniteError(ValueError):
    """NaN or Inf in the input: any map would be meaningless, though it would look normal."""


class NonFiniteOutputError(RuntimeError):
    """NaN or Inf in the output of a model given a finite input: any map would be meaningless."""


# Public from PyTorch 2.3; PyTorch 2.2's TorchDynamo folds its private torch._utils.is_compiling
# to True while tracing (tests/test_pytorch_private_api.py checks whichever this version uses).
_is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._utils.is_compiling


def compiling() -> bool:
    """True while ``torch.compile`` (TorchDynamo) traces the calling code."""
    return bool(_is_compiling())


def refuse_traced(x: Tensor, rules_text: str) -> None:
    """Refuse a ReLU that a compiler traces instead of running it.

    A traced backward pass keeps the rule of the moment it was traced, for good: every
    later call would get that map, whatever the rule.

    Raises
    ------
    RuleNotAppliedError
        When ``x`` is one of the tensors that torch.compile, torch.export and make_fx
        trace with.
    """
    if isinstance(x, (FakeTensor, FunctionalTensor)):
        raise RuleNotAppliedError(
            f"deconvlab: a ReLU is being traced (torch.compile, torch.export or make_fx) under {rules_text}; "
            "the traced backward pass would keep one rule for every later call. Run the uncompiled "
            "module under the rule instead (for m = torch.compile(model): m._orig_mod)"
        )


def eager_module(model: nn.Module) -> nn.Module:
    """The module that ``torch.compile(model)`` wraps, or ``model`` itself.

    The uncompiled module computes the same function, and every rule reaches its ReLUs at
    backward time. ``_orig_mod`` is private to PyTorch (``OptimizedModule``) but has no
    public equivalent; tests/test_pytorch_private_api.py checks it.
    """
    original = getattr(model, "_orig_mod", None)
    return original if isinstance(original, nn.Module) else model


def scripted_submodules(model: nn.Module) -> list[str]:
    """Paths of the TorchScript (scripted or traced) submodules of ``model``, outermost only."""
    found: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.jit.ScriptModule) and not any(
            name.startswith(outer + ".") for outer in found
        ):
            found.append(name or "<model>")
    return found


_NATIVE_RELU = re.compile(r"^ReluBackward\d+$")
_OPAQUE = {
    "CompiledFunctionBackward": "compiled",
    "CheckpointFunctionBackward": "checkpoint",
}


def node_kind(node: object) -> str | None:
    """What kind of node ``node`` is, if no rule reaches into it.

    ``"relu"`` (a native ReLU backward), ``"compiled"``, ``"torchscript"`` or ``"checkpoint"``
    (a backward pass of its own, opaque to rules); None for any other node.
    """
    name_of = getattr(node, "name", None)
    if name_of is None:
        return None
    name = name_of()
    if _NATIVE_RELU.match(name):
        return "relu"
    if name.endswith("DifferentiableGraphBackward"):  # "torch::jit::(anonymous namespace)::..."
        return "torchscript"
    return _OPAQUE.get(name)


def _native_relu_text(count: int, scripted: list[str]) -> str:
    where = (
        f"inside the TorchScript submodules {', '.join(map(repr, scripted))}, which run their own "
        "interpreter; use the Python modules they were scripted or traced from"
        if scripted
        else "in a thread started inside forward (a rule belongs to the thread that opened it: run "
        "those ReLUs in the calling thread), or through a spelling that is not intercepted, such "
        "as torch.ops.aten.relu (use F.relu)"
    )
    return f"{count} ReLU(s) on the gradient path kept their plain gradient: they ran {where}"


_FIXES = {
    "compiled": (
        "part of the model runs compiled by torch.compile (a compiled submodule, model.compile() "
        "or a compiled function): its backward pass was fixed when it was compiled, so no rule "
        "reaches the ReLUs inside it; pass the uncompiled module (for m = torch.compile(module): "
        "m._orig_mod)"
    ),
    "torchscript": (
        "part of the model runs as TorchScript ({scripted}): its ReLUs run inside the TorchScript "
        "interpreter, which no rule reaches; use the Python modules it was scripted or traced from"
    ),
    "checkpoint": (
        "activation checkpointing with use_reentrant=True recomputes its segments during the "
        "backward pass, where no rule reaches them; use "
        "torch.utils.checkpoint.checkpoint(..., use_reentrant=False), which keeps the rule"
    ),
}


def check_rule_reached(nodes: Iterable[object], rules_text: str, model: nn.Module | None = None) -> None:
    """Refuse a recorded graph in which some ReLU does not get the rule.

    Parameters
    ----------
    nodes : iterable of autograd nodes
        The nodes on the gradient path, e.g. :func:`deconvlab.observations.nodes_reaching`
        of the output and the input (or layer).
    rules_text : str
        How the message names the rules, e.g. ``"the 'deconvnet' rule"``.
    model : nn.Module, optional
        Used to name the TorchScript submodules in the message.

    Raises
    ------
    RuleNotAppliedError
        Naming each feature found and what to do instead.
    """
    kinds = Counter(kind for kind in map(node_kind, nodes) if kind is not None)
    if not kinds:
        return
    scripted = scripted_submodules(model) if model is not None else []
    reasons = []
    if kinds["relu"]:
        reasons.append(_native_relu_text(kinds["relu"], scripted))
    scripted_text = ", ".join(map(repr, scripted)) or "a scripted function"
    for kind in ("compiled", "torchscript", "checkpoint"):
        if kinds[kind]:
            reasons.append(_FIXES[kind].format(scripted=scripted_text))
    raise RuleNotAppliedError(
        f"deconvlab: {rules_text} cannot reach every ReLU of this model, so the map would be wrong: "
        + "; and ".join(reasons)
    )


def _examples(bad: Tensor) -> str:
    """``"examples [0, 3]"`` of a batch-first boolean tensor, at most 8 named."""
    if bad.dim() == 0:
        return "its only value"
    rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
    shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
    return f"example{'s' if len(rows) > 1 else ''} [{shown}]"


def _non_finite(tensor: Tensor) -> str | None:
    """``"1 NaN and 0 infinite values, in example [1]"``, or None when every value is finite."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return None
    finite = torch.isfinite(tensor.detach())
    if bool(finite.all()):
        return None
    nan = int(torch.isnan(tensor.detach()).sum())
    return f"{nan} NaN and {int((~finite).sum()) - nan} infinite values, in {_examples(~finite)}"


def check_finite_input(x: Tensor, name: str = "x") -> None:
    """Refuse NaN or Inf in the input ``x`` (batch first).

    A NaN closes every ReLU gate it reaches, so the map would still look normal.

    Raises
    ------
    NonFiniteError
        Naming how many values and which examples.
    """
    found = _non_finite(x)
    if found is not None:
        raise NonFiniteError(
            f"{name} has {found}: the model's output and every map would be meaningless there, "
            f"though the map would look normal; clean it first (e.g. torch.nan_to_num({name})) "
            "or leave those examples out"
        )


def check_finite_output(output: Tensor, what: str = "the model's output") -> None:
    """Refuse NaN or Inf in a model's output (or a layer's), given a finite input.

    Raises
    ------
    NonFiniteOutputError
        Naming how many values and which examples.
    """
    found = _non_finite(output)
    if found is not None:
        raise NonFiniteOutputError(
            f"{what} has {found}, from a finite input (an overflow? try float64): a map seeded "
            "there would be meaningless, though it would look normal"
        )
