"""TorchRay's ``torchray.attribution.guided_backprop``: guided backprop (Springenberg et al., 2015).

Unlike TorchRay's, which lets the signal through at ``x == 0``, the gate is closed at
``x == 0``, as the equation (and autograd's ReLU) says.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...context import backward_rule
from ...rules import GUIDED_BACKPROP
from .common import ContextBuilder, saliency

__all__ = ["GuidedBackpropContext", "GuidedBackpropReLU", "guided_backprop"]


class GuidedBackpropReLU(torch.autograd.Function):
    """Guided-backprop ReLU: backward ``ReLU*(x, p) = p · [x > 0] · [p > 0]``.

    Use as ``GuidedBackpropReLU.apply(x)``.
    """

    @staticmethod
    def forward(ctx: Any, input: Tensor) -> Tensor:
        out = torch.relu(input)
        ctx.save_for_backward(out)  # [relu(x) > 0] == [x > 0]
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return GUIDED_BACKPROP.backward(out, grad_output)


class GuidedBackpropContext(backward_rule):
    """Every ReLU in the block gets guided backprop's backward, ``ReLU*(x, p) = p · [x > 0] · [p > 0]``."""

    def __init__(self) -> None:
        super().__init__(GUIDED_BACKPROP)


def guided_backprop(
    *args: Any, context_builder: ContextBuilder = GuidedBackpropContext, **kwargs: Any
) -> Any:
    """Guided-backprop saliency; same arguments as :func:`~.common.saliency`."""
    # saliency(*args, context_builder=context_builder, **kwargs), in a form mypy accepts
    kwargs["context_builder"] = context_builder
    return saliency(*args, **kwargs)
