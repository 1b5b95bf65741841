"""TorchRay's ``torchray.attribution.deconvnet``: DeConvNet (Zeiler and Fergus, ECCV 2014)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...context import backward_rule
from ...rules import DECONVNET
from .common import ContextBuilder, saliency

__all__ = ["DeConvNetContext", "DeConvNetReLU", "deconvnet"]


class DeConvNetReLU(torch.autograd.Function):
    """DeConvNet ReLU: forward ``relu(x)``; backward ``ReLU*(x, p) = p · [p > 0]``.

    Use as ``DeConvNetReLU.apply(x)``.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor) -> Tensor:
        return torch.relu(input)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        return DECONVNET.backward(grad_output, grad_output)  # x is ignored by the rule


class DeConvNetContext(backward_rule):
    """Every ReLU in the block gets DeConvNet's backward, ``ReLU*(x, p) = p · [p > 0]``."""

    def __init__(self) -> None:
        super().__init__(DECONVNET)


def deconvnet(*args: Any, context_builder: ContextBuilder = DeConvNetContext, **kwargs: Any) -> Any:
    """DeConvNet saliency; same arguments as :func:`~.common.saliency`."""
    # saliency(*args, context_builder=context_builder, **kwargs), in a form mypy accepts
    kwargs["context_builder"] = context_builder
    return saliency(*args, **kwargs)
