"""TorchRay's ``Patch``, ``ReLUContext`` and ``NullContext`` (re-exported by :mod:`.common`).

TorchRay swaps ``torch.relu`` and ``torch.relu_`` for its ReLU function while a
context is open. Here :class:`ReLUContext` is a :class:`deconvlab.backward_rule`: no
function is replaced; every ReLU spelling evaluated in the block (``nn.ReLU``,
``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms, which stay in
place) gets the backward of the given ReLU function. :class:`Patch` is still
provided for code that patches callables itself.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

from ...context import backward_rule
from ...rules import Rule

__all__ = ["NullContext", "Patch", "ReLUContext"]


class Patch:
    """Replace the callable at a dotted path, e.g. ``Patch("torch.relu", my_relu)``, until removed.

    Parameters
    ----------
    target : str
        ``"package.module.attribute"``; the modules are imported as needed.
    new_callable : callable
        What ``package.module.attribute`` is while the patch is in place.
    """

    @staticmethod
    def resolve(target: str) -> tuple[Any, str]:
        """``"a.b.c"`` -> (the object ``a.b``, ``"c"``), importing ``a`` and ``a.b`` on the way."""
        path, attribute = target.rsplit(".", 1)
        names = path.split(".")
        owner: Any = importlib.import_module(names[0])
        for depth in range(1, len(names)):
            importlib.import_module(".".join(names[: depth + 1]))
            owner = getattr(owner, names[depth])
        return owner, attribute

    def __init__(self, target: str, new_callable: Any) -> None:
        self.target: Any
        self.target, self.attribute = Patch.resolve(target)
        self.orig_callable = getattr(self.target, self.attribute)
        setattr(self.target, self.attribute, new_callable)

    def remove(self) -> None:
        """Put the original callable back (once; later calls do nothing)."""
        if self.target is not None:
            setattr(self.target, self.attribute, self.orig_callable)
            self.target = None

    def __del__(self) -> None:
        self.remove()


def _backward_of(relu_func: type[torch.autograd.Function]) -> Rule:
    """The rule ``ReLU*(x, p)`` = the backward of ``relu_func`` at ``x`` with incoming ``p``."""

    def backward(x: Tensor, p: Tensor) -> Tensor:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(relu_func.apply(leaf), leaf, p)
        return grad

    return Rule(relu_func.__name__, backward, label=relu_func.__name__)


class ReLUContext(backward_rule):
    """Every ReLU evaluated in the block backpropagates like ``relu_func``.

    Parameters
    ----------
    relu_func : subclass of torch.autograd.Function
        A ReLU whose backward defines the method. Its forward is not used: the forward
        stays ``max(x, 0)`` (in place where the model asks for it). deconvlab's
        :class:`~.deconvnet.DeConvNetReLU` and :class:`~.guided_backprop.GuidedBackpropReLU`
        carry their rule (``relu_func.rule``); any other function is differentiated at
        each ReLU's input during the backward pass.
    """

    def __init__(self, relu_func: type[torch.autograd.Function]) -> None:
        if not (isinstance(relu_func, type) and issubclass(relu_func, torch.autograd.Function)):
            raise TypeError(f"relu_func must be a torch.autograd.Function subclass, got {relu_func!r}")
        self.relu_func = relu_func
        rule = getattr(relu_func, "rule", None)
        super().__init__(rule if isinstance(rule, Rule) else _backward_of(relu_func))


class NullContext:
    """No change to backpropagation: the plain gradient (TorchRay's ``NullContext``)."""

    def __enter__(self) -> NullContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None
