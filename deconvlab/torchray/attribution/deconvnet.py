r"""TorchRay's ``torchray.attribution.deconvnet``: DeConvNet (Zeiler and Fergus, ECCV 2014).

:func:`deconvnet` is :func:`~.common.saliency` with ``context_builder=DeConvNetContext``;
inside :class:`DeConvNetContext` every ReLU backpropagates
:math:`\operatorname{ReLU}^*(x, p) = p \cdot [p > 0]`, as :class:`DeConvNetReLU` does.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...rules import DECONVNET
from .common import ReLUContext, saliency

__all__ = ["DeConvNetContext", "deconvnet"]


class DeConvNetReLU(torch.autograd.Function):
    """DeConvNet ReLU: forward ``relu(x)``; backward ``ReLU*(x, p) = p · [p > 0]``.

    Use as ``DeConvNetReLU.apply(x)``.
    """

    rule = DECONVNET

    @staticmethod
    def forward(ctx: Any, input: Tensor) -> Tensor:
        return torch.relu(input)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        return DECONVNET.backward(grad_output, grad_output)  # x is ignored by the rule


class DeConvNetContext(ReLUContext):
    """Every ReLU in the block gets DeConvNet's backward, ``ReLU*(x, p) = p · [p > 0]``."""

    def __init__(self) -> None:
        super().__init__(DeConvNetReLU)


def deconvnet(*args: Any, context_builder: Any = DeConvNetContext, **kwargs: Any) -> Any:
    """DeConvNet saliency; same arguments and return values as :func:`~.common.saliency`."""
    kwargs["context_builder"] = context_builder  # saliency(*args, context_builder=..., **kwargs)
    return saliency(*args, **kwargs)
