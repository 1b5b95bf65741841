"""What a rule did not touch, said in a warning that is true, complete and readable.

While a :class:`~deconvlab.backward_rule` is open, :class:`Observations` records each
ReLU it routed and each other nonlinearity it left alone (GELU, SiLU, Sigmoid, Tanh,
Softmax, ...), with the module it ran in, learnt from PyTorch's public global forward
hooks. :func:`warn_untouched` then warns, grouped by kind with a count and a few
example paths, pointing at the caller's line:

* :class:`UnsupportedActivationWarning` names the nonlinearities that keep their plain
  gradient;
* :class:`NoReLUWarning` says that no ReLU was modified, so every rule equals the
  gradient.

Given the output and the input of a recorded pass (as :func:`deconvlab.attribute` does),
only what lies on the gradient path from the output to the input counts: a ReLU applied
to a constant table (Swin-v2's position bias) modifies nothing that reaches the map.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils.hooks import RemovableHandle

from .escapes import compiling

__all__ = [
    "NoReLUWarning",
    "Observations",
    "UnsupportedActivationWarning",
    "activation_label",
    "input_node",
    "nodes_reaching",
    "warn_untouched",
]

EXAMPLES = 3  # example paths named per kind of nonlinearity


class UnsupportedActivationWarning(UserWarning):
    """A non-ReLU nonlinearity ran under a rule: it keeps its plain gradient."""


class NoReLUWarning(UserWarning):
    """No ReLU on the gradient path was modified by a rule: every rule equals the plain gradient."""


_NAMES = {
    "gelu": "GELU",
    "silu": "SiLU",
    "mish": "Mish",
    "leaky_relu": "LeakyReLU",
    "leaky_relu_": "LeakyReLU",
    "relu6": "ReLU6",
    "elu": "ELU",
    "elu_": "ELU",
    "selu": "SELU",
    "selu_": "SELU",
    "celu": "CELU",
    "celu_": "CELU",
    "hardswish": "Hardswish",
    "hardsigmoid": "Hardsigmoid",
    "hardtanh": "Hardtanh",
    "hardtanh_": "Hardtanh",
    "softplus": "Softplus",
    "prelu": "PReLU",
    "rrelu": "RReLU",
    "rrelu_": "RReLU",
    "sigmoid": "Sigmoid",
    "sigmoid_": "Sigmoid",
    "tanh": "Tanh",
    "tanh_": "Tanh",
    "softmax": "Softmax",
    "log_softmax": "LogSoftmax",
    "glu": "GLU",
    "logsigmoid": "LogSigmoid",
    "softsign": "Softsign",
    "tanhshrink": "Tanhshrink",
    "threshold": "Threshold",
    "threshold_": "Threshold",
    # composites that PyTorch hands to a function mode whole: the softmax inside is not seen otherwise
    "scaled_dot_product_attention": "Softmax",
    "multi_head_attention_forward": "Softmax",
    "softmin": "Softmin",
}
_LABELS: dict[object, str] = {}
# F's built-in activations live in torch._C._nn (F.gelu is torch._C._nn.gelu; F.hardswish calls
# torch._C._nn.hardswish); tests/test_pytorch_private_api.py fails loudly if that namespace goes.
for _namespace in (F, torch, torch.Tensor, torch._C._nn, torch.special):
    for _name, _label in _NAMES.items():
        if hasattr(_namespace, _name):
            _LABELS[getattr(_namespace, _name)] = _label


def activation_label(func: object) -> str | None:
    """``"GELU"`` for a non-ReLU nonlinearity's function (any spelling), else None."""
    return _LABELS.get(func)


@dataclass
class _Seen:
    """One nonlinearity call: its kind, where it ran, and the node its output hangs from."""

    label: str
    where: str
    node: object


@dataclass
class Observations:
    """What one open :class:`~deconvlab.backward_rule` saw in one thread.

    Attributes
    ----------
    ran : bool
        Some torch function ran in the block.
    relus : list
        The autograd nodes of the ReLUs the rule routed (their outputs' ``grad_fn``).
    untouched : list
        The non-ReLU nonlinearities, with where they ran.
    sites : list
        Under rule maps, where each routed ReLU ran and which entries placed it
        (see :class:`deconvlab.rule_maps.SiteResolver`).
    """

    module_names: Mapping[int, str] | None = None
    ran: bool = False
    relus: list[object] = field(default_factory=list)
    untouched: list[_Seen] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)
    hooks: list[RemovableHandle] = field(default_factory=list)
    sites: list[tuple[object, tuple]] = field(default_factory=list)

    def track_modules(self) -> None:
        """Learn which module runs (this thread only), through public global forward hooks."""
        thread, modules = threading.get_ident(), self.modules

        def enter(module: nn.Module, args: object) -> None:
            if not compiling() and threading.get_ident() == thread:
                modules.append(module)

        def leave(module: nn.Module, args: object, output: object) -> None:
            if not compiling() and threading.get_ident() == thread and modules and modules[-1] is module:
                modules.pop()

        # One C-level call each from here (extend over map): an interrupt cannot fall between
        # registering a hook and keeping its handle.
        self.hooks.extend(map(register_module_forward_pre_hook, [enter]))
        self.hooks.extend(map(partial(register_module_forward_hook, always_call=True), [leave]))

    def stop_tracking(self) -> None:
        """Remove the global hooks (idempotent)."""
        for handle in self.hooks:
            handle.remove()

    def saw_relu(self, output: object) -> None:
        self.relus.append(getattr(output, "grad_fn", None))

    def saw_untouched(self, label: str, output: object) -> None:
        module = self.modules[-1] if self.modules else None
        if isinstance(module, nn.ReLU6):
            label = "ReLU6"  # nn.ReLU6 runs F.hardtanh: its kind is ReLU6, as F.relu6's is
        self.untouched.append(_Seen(label, self._where(label, module), getattr(output, "grad_fn", None)))

    def _where(self, label: str, module: nn.Module | None) -> str:
        """``"'blocks.0.act' (GELU)"``: the module the nonlinearity ran in."""
        if module is None:
            return "code outside any nn.Module"
        names = self.module_names
        kind = "" if type(module).__name__ == label else f" ({type(module).__name__})"
        if names is not None and id(module) in names:
            return f"'{names[id(module)] or '<model>'}'{kind}"
        return f"a {type(module).__name__} module"


def input_node(x: Tensor) -> object:
    """The autograd node gradients of ``x`` flow into: its ``grad_fn``, or a leaf's AccumulateGrad."""
    if x.grad_fn is not None or not x.requires_grad:
        return x.grad_fn
    with torch.enable_grad():
        view = x.view_as(x)
    return view.grad_fn.next_functions[0][0]  # type: ignore[union-attr]


def nodes_reaching(output: Tensor, targets: Iterable[object]) -> set[object]:
    """The autograd nodes of ``output``'s graph from which one of the ``targets`` nodes is reached.

    A node is on the gradient path from ``output`` to the targets (e.g. the input's
    :func:`input_node`) exactly when it is in this set: what happens elsewhere
    (parameters, constant tables) cannot change the map.
    """
    wanted = {id(node) for node in targets if node is not None}
    reaches: dict[int, bool] = {}
    # Keep every visited node alive: PyTorch 2.2 makes a new Python object for a C++ node each
    # time it is asked for and frees it after use, so an id() would be reused by another node.
    alive: list[object] = []
    found: set[object] = set()
    if output.grad_fn is None:
        return found
    stack: list[tuple[object, bool]] = [(output.grad_fn, False)]
    while stack:  # iterative post-order: deep networks would overflow a recursive walk
        node, expanded = stack.pop()
        children = [child for child, _ in node.next_functions if child is not None]  # type: ignore[attr-defined]
        if expanded:
            reaches[id(node)] = id(node) in wanted or any(reaches.get(id(c), False) for c in children)
            if reaches[id(node)]:
                found.add(node)
        elif id(node) not in reaches:
            reaches[id(node)] = False  # being visited; autograd graphs have no cycles
            alive.append(node)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in reaches)
    return found


def warn_untouched(
    seen: Observations, rules_text: str, on_path: set[object] | None = None, stacklevel: int | None = None
) -> None:
    """Warn about what ``rules_text`` left untouched; with ``on_path``, only what reaches the input."""
    untouched = [s for s in seen.untouched if on_path is None or s.node in on_path]
    if untouched:
        warnings.warn(
            f"deconvlab: these nonlinearities are not ReLU, so they are untouched by {rules_text} and "
            f"keep their plain gradient: {_grouped(untouched)}",
            UnsupportedActivationWarning,
            stacklevel=stacklevel or caller_stacklevel(),
        )
    relus = [node for node in seen.relus if on_path is None or node in on_path]
    if seen.ran and not relus:
        where = "" if on_path is None else " on the path from the output to the input"
        warnings.warn(
            f"deconvlab: no ReLU{where} was modified by {rules_text}, so every rule equals the plain "
            "gradient for this model",
            NoReLUWarning,
            stacklevel=stacklevel or caller_stacklevel(),
        )


BUDGET = 400  # characters for the grouped list: the whole warning stays under 600


def _grouped(seen: list[_Seen]) -> str:
    """``"GELU ×12 calls ('a', 'b', ...) | Sigmoid ×1 call ('c')"``, in order of first appearance.

    Every kind gets one example place; more (up to EXAMPLES each) are added in turn while the
    list fits in BUDGET characters.
    """
    by_kind: dict[str, dict[str, None]] = defaultdict(dict)
    counts: dict[str, int] = defaultdict(int)
    for item in seen:
        counts[item.label] += 1
        by_kind[item.label][item.where] = None
    places = {label: list(where) for label, where in by_kind.items()}
    shown = {label: 1 for label in places}

    def text() -> str:
        parts = []
        for label, examples in places.items():
            more = ", ..." if shown[label] < counts[label] else ""
            times = "call" if counts[label] == 1 else "calls"
            parts.append(f"{label} ×{counts[label]} {times} ({', '.join(examples[: shown[label]])}{more})")
        return " | ".join(parts)

    for _ in range(EXAMPLES - 1):
        for label, examples in places.items():
            if shown[label] < min(EXAMPLES, len(examples)):
                shown[label] += 1
                if len(text()) > BUDGET:
                    shown[label] -= 1
    return text()


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_INTERNAL = (_PACKAGE, os.path.abspath(contextlib.__file__))


def caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first line outside deconvlab."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_INTERNAL):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
