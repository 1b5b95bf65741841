"""TorchRay's ``torchray.attribution.common``: the backprop-saliency recipe shared by the methods.

:func:`saliency` follows TorchRay's recipe: probe the input (or the output of
``saliency_layer``), seed the backward pass with ``get_backward_gradient``,
backpropagate inside ``context_builder()``, turn the pseudo-gradient into a map with
``gradient_to_saliency`` (default: channel-max of its absolute value, Simonyan et al.
2014), then optionally resize and smooth it. The forward pass is deconvlab's one
pipeline (:func:`deconvlab.recording.recording`): eval mode, each module's mode
restored, no hooks left, the caller's tensor untouched and the parameters given no
gradient (the signal is computed with :func:`torch.autograd.grad`).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...checks import Target, seed_from_target
from ...model_state import removing
from ...recording import recording
from ..utils import imsmooth

__all__ = [
    "ContextBuilder",
    "NullContext",
    "Probe",
    "get_backward_gradient",
    "gradient_to_saliency",
    "imsmooth",
    "resize_saliency",
    "saliency",
]

Resize = Union[bool, tuple[int, int]]

#: Makes the context the backward pass runs in (TorchRay's ``context_builder``), e.g. a class.
ContextBuilder = Callable[[], AbstractContextManager[Any]]


class NullContext(nullcontext):
    """No change to backpropagation: the plain gradient (TorchRay's ``NullContext``)."""

    def __init__(self) -> None:
        super().__init__()


def gradient_to_saliency(x: Tensor) -> Tensor:
    r"""Channel-max of the absolute gradient: :math:`s_{n,1,u} = \max_c |\partial x_{n,c,u}|`.

    ``x`` must carry the signal in ``x.grad`` (as in TorchRay).
    """
    if x.grad is None:
        raise ValueError("gradient_to_saliency needs a tensor whose .grad holds the signal")
    return x.grad.abs().amax(dim=1, keepdim=True)


def get_backward_gradient(pred_y: Tensor, y: Target) -> Tensor:
    """The seed for ``pred_y``: ``y`` itself if shaped like it, else a one-hot of class ``y``."""
    return seed_from_target(pred_y, y)


def resize_saliency(tensor: Tensor, saliency: Tensor, size: Resize, mode: str) -> Tensor:
    """Resize ``saliency`` to ``tensor``'s size (``size=True``) or to ``(width, height)``."""
    if size is False or size is None:
        return saliency
    if size is True:
        out_size = tuple(tensor.shape[2:])
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        out_size = (int(size[1]), int(size[0]))  # TorchRay takes (width, height)
    else:
        raise ValueError(f"resize must be a bool or a (width, height) pair, got {size!r}")
    linear = mode in ("linear", "bilinear", "bicubic", "trilinear")
    return F.interpolate(saliency, out_size, mode=mode, align_corners=False if linear else None)


class Probe:
    """Outputs of one module, recorded by ``saliency(..., debug=True)`` (in ``.data``)."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.data: list[Tensor] = []
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: object, output: object) -> None:
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        # A copy: a following in-place op (ReLU(inplace=True)) would overwrite a view.
        self.data = [t.detach().clone() for t in outputs if isinstance(t, Tensor)]

    def remove(self) -> None:
        self.handle.remove()


def _carrier(value: Tensor, signal: Tensor) -> Tensor:
    """A tensor shaped like ``value`` whose ``.grad`` is ``signal``, for ``gradient_to_saliency``."""
    carrier = value.detach().clone()
    carrier.grad = signal
    return carrier


def saliency(
    model: nn.Module,
    input: Tensor,
    target: Target,
    saliency_layer: str | nn.Module = "",
    resize: Resize = False,
    resize_mode: str = "bilinear",
    smooth: float = 0,
    context_builder: ContextBuilder = NullContext,
    gradient_to_saliency: Callable[[Tensor], Tensor] = gradient_to_saliency,
    get_backward_gradient: Callable[[Tensor, Target], Tensor] = get_backward_gradient,
    debug: bool = False,
) -> Tensor | tuple[Tensor, OrderedDict]:
    """Backprop saliency at the input or at ``saliency_layer`` (TorchRay's ``saliency``).

    Returns the (N, 1, H, W) map, or ``(map, probes)`` with ``debug=True`` where
    ``probes`` maps every module name to a :class:`Probe` of its outputs.
    """
    layer = None if saliency_layer == "" else saliency_layer
    probes: OrderedDict[str, Probe] = OrderedDict()
    with removing([]) as handles:
        if debug:
            probes.update((name, Probe(module)) for name, module in model.named_modules())
            handles.extend(probe.handle for probe in probes.values())
        with recording(model, input, context_builder(), layer) as forward:
            assert forward.output is not None
            seed = get_backward_gradient(forward.output, target)
            wrt = forward.layer.wrt() if forward.layer is not None else forward.leaf
            (signal,) = torch.autograd.grad(forward.output, wrt, seed)
        probed = forward.layer.checked_output() if forward.layer is not None else forward.leaf
        saliency_map = gradient_to_saliency(_carrier(probed, signal))
    saliency_map = resize_saliency(input, saliency_map, resize, resize_mode)
    if smooth > 0:
        saliency_map = imsmooth(saliency_map, sigma=smooth * max(saliency_map.shape[2:]))
    return (saliency_map, probes) if debug else saliency_map
