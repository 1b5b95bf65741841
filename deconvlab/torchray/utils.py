"""Image utilities of TorchRay's ``torchray.utils`` that the attribution methods use."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["imsmooth"]


def imsmooth(tensor: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian smoothing of an (N, C, H, W) tensor, edges replicated."""
    if sigma <= 0:
        return tensor
    width = math.ceil(4 * sigma)
    taps = torch.arange(-width, width + 1, dtype=tensor.dtype, device=tensor.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = tensor.shape[1]
    padded = F.pad(tensor, (width, width, width, width), mode="replicate")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
