r"""TorchRay's ``torchray.attribution.guided_backprop``: guided backprop (Springenberg et al., 2015).

:func:`guided_backprop` is :func:`~.common.saliency` with
``context_builder=GuidedBackpropContext``; inside :class:`GuidedBackpropContext` every
ReLU backpropagates :math:`\operatorname{ReLU}^*(x, p) = p \cdot [x > 0] \cdot [p > 0]`,
as :class:`GuidedBackpropReLU` does. The gate is closed at :math:`x = 0`, as this
equation (which TorchRay documents) and autograd's ReLU say; TorchRay's implementation
lets the signal through there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...rules import GUIDED_BACKPROP
from .common import ReLUContext, saliency

__all__ = ["GuidedBackpropContext", "guided_backprop"]


class GuidedBackpropReLU(torch.autograd.Function):
    """Guided-backprop ReLU: backward ``ReLU*(x, p) = p · [x > 0] · [p > 0]``.

    Use as ``GuidedBackpropReLU.apply(x)``.
    """

    rule = GUIDED_BACKPROP

    @staticmethod
    def forward(ctx: Any, input: Tensor) -> Tensor:
        out = torch.relu(input)
        ctx.save_for_backward(out)  # [relu(x) > 0] == [x > 0]
        return out

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return GUIDED_BACKPROP.backward(out, grad_output)


class GuidedBackpropContext(ReLUContext):
    """Every ReLU in the block gets guided backprop's backward, ``ReLU*(x, p) = p · [x > 0] · [p > 0]``."""

    def __init__(self) -> None:
        super().__init__(GuidedBackpropReLU)


def guided_backprop(*args: Any, context_builder: Any = GuidedBackpropContext, **kwargs: Any) -> Any:
    """Guided-backprop saliency; same arguments and return values as :func:`~.common.saliency`."""
    kwargs["context_builder"] = context_builder  # saliency(*args, context_builder=..., **kwargs)
    return saliency(*args, **kwargs)
