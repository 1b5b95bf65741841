r"""TorchRay's ``torchray.utils`` as the attribution methods and examples use it.

:func:`imsmooth` is TorchRay's separable Gaussian filter with the same kernel,
:math:`f_i \propto \exp(-i^2 / (\sqrt{2}\,\sigma + \epsilon)^2)` for
:math:`|i| \le \lceil 4\sigma \rceil` (:math:`\epsilon` the float32 machine epsilon),
built in float32 and normalised to sum to 1; the same stride and padding; and the same
numbers on float32 tensors. Unlike TorchRay's, it also smooths float64 tensors (the
kernel is cast to the tensor's dtype) and, for the ``"reflect"`` and ``"replicate"``
padding modes, ignores ``padding_value`` (current PyTorch refuses a value there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["get_device", "imsc", "imsmooth"]

_SQRT_TWO = torch.tensor(math.sqrt(2), dtype=torch.float32)
_EPSILON = torch.tensor(torch.finfo(torch.float32).eps, dtype=torch.float32)


def get_device(gpu: int | None = 0) -> torch.device:
    """``cuda:<gpu>`` when CUDA is available and ``gpu`` is not None, else the CPU."""
    return torch.device(f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu")


#: The largest padded tensor :func:`imsmooth` allocates; a wider Gaussian is refused.
MAX_SMOOTHING_BYTES = 2**31


def _check_sigma(tensor: Tensor, sigma: float, padding: int) -> None:
    """Refuse a sigma that is no finite non-negative number, or whose padding would not fit."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise TypeError(f"sigma must be a number of pixels, got {type(sigma).__name__}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite non-negative number of pixels, got {sigma}")
    reach = math.ceil(4 * sigma) + padding
    padded = math.prod(tensor.shape[:-2]) * (tensor.shape[-2] + 2 * reach) * (tensor.shape[-1] + 2 * reach)
    needed = padded * tensor.element_size()
    if needed > MAX_SMOOTHING_BYTES:
        raise ValueError(
            f"sigma={sigma:g} px needs a Gaussian {2 * reach + 1} taps wide and a padded tensor of "
            f"{needed / 1e9:.1f} GB for images of {tuple(tensor.shape[-2:])} px; a Gaussian much wider "
            "than the image averages it to a constant: use a sigma of at most the image's size"
        )


def imsmooth(
    tensor: Tensor,
    sigma: float,
    stride: int = 1,
    padding: int = 0,
    padding_mode: str = "constant",
    padding_value: float = 0,
) -> Tensor:
    """Gaussian smoothing of an (N, C, H, W) tensor, vertically then horizontally.

    Parameters
    ----------
    tensor : Tensor
        The images.
    sigma : float
        Standard deviation of the Gaussian, in pixels (0 leaves the values as they are).
    stride : int, default 1
        Subsampling factor of each pass.
    padding : int, default 0
        Extra padding on each side, beyond the filter's half-width.
    padding_mode : {"constant", "reflect", "replicate"}, default "constant"
        How the border is extended.
    padding_value : float, default 0
        The value of ``"constant"`` padding.

    Returns
    -------
    Tensor
        The smoothed images. With zero constant padding, each pass pads by the filter's
        half-width plus ``padding`` along the axis it smooths and by ``padding`` along the
        other; otherwise the tensor is padded once, by the half-width plus ``padding``.
    """
    _check_sigma(tensor, sigma, padding)
    half = math.ceil(4 * sigma)
    taps = torch.arange(-half, half + 1, dtype=torch.float32, device=tensor.device)
    taps = taps / (_SQRT_TWO * sigma + _EPSILON).to(tensor.device)
    kernel = torch.exp(-taps * taps)
    kernel = (kernel / kernel.sum()).to(tensor.dtype)
    channels = tensor.shape[1]
    vertical = kernel.reshape(1, 1, -1, 1).expand(channels, -1, -1, -1)
    horizontal = kernel.reshape(1, 1, 1, -1).expand(channels, -1, -1, -1)
    reach = half + padding
    if padding_mode == "constant" and padding_value == 0:  # zeros: let each convolution pad
        out = F.conv2d(tensor, vertical, padding=(reach, padding), stride=(stride, 1), groups=channels)
        return F.conv2d(out, horizontal, padding=(padding, reach), stride=(1, stride), groups=channels)
    value = padding_value if padding_mode == "constant" else None
    out = F.pad(tensor, (reach, reach, reach, reach), mode=padding_mode, value=value)
    out = F.conv2d(out, vertical, stride=(stride, 1), groups=channels)
    return F.conv2d(out, horizontal, stride=(1, stride), groups=channels)


def imsc(
    img: Any,
    *args: Any,
    quiet: bool = False,
    lim: Any = None,
    interpolation: str = "lanczos",
    **kwargs: Any,
) -> tuple[Tensor, Any]:
    """Rescale a (3, H, W) or (1, H, W) image to [0, 1] and show it with ``plt.imshow``.

    Parameters
    ----------
    img : Tensor or PIL.Image.Image
        The image.
    *args, **kwargs
        Passed on to ``plt.imshow``.
    quiet : bool, default False
        Only rescale; do not draw.
    lim : (low, high), optional
        The values mapped to 0 and 1 (default: the image's minimum and maximum).
    interpolation : str, default "lanczos"
        ``plt.imshow``'s interpolation.

    Returns
    -------
    (Tensor, AxesImage or None)
        The rescaled image and the image artist (None when ``quiet``).
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    if isinstance(img, Image.Image):
        pixels = np.array(img, dtype=np.float32)
        img = torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1)).permute(2, 0, 1) / 255
    handle = None
    with torch.no_grad():
        low, high = lim if lim else (img.min(), img.max())
        img = ((img - low) * (1 / (high - low))).clamp(0, 1)
        if not quiet:
            bitmap = img.expand(3, *img.shape[1:]).permute(1, 2, 0).cpu().numpy()
            handle = plt.imshow(bitmap, *args, interpolation=interpolation, **kwargs)
            plt.gca().axis("off")
    return img, handle
