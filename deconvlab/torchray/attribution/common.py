"""TorchRay's ``torchray.attribution.common``: the backprop-saliency recipe shared by the methods.

:func:`saliency` follows TorchRay's recipe: record the input (or the output of
``saliency_layer``), seed the backward pass with ``get_backward_gradient``,
backpropagate inside ``context_builder()``, turn the pseudo-gradient into a map with
``gradient_to_saliency`` (default: channel-max of its absolute value, Simonyan et al.
2014), then optionally resize and smooth it. As in TorchRay, the caller's input ends
with the signed signal in ``input.grad`` when the map is taken at the input (or with
``debug=True``, or when it already requires grad). The forward pass is deconvlab's one
pipeline (:func:`deconvlab.recording.recording`): eval mode, each module's mode
restored, no hook left behind, the parameters given no gradient. Where this module
differs from TorchRay, see :mod:`deconvlab.torchray`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any, Callable, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

from ...checks import Target, check_model, find_layer, seed_from_target
from ...model_state import removing
from ...recording import recording
from ..utils import imsmooth
from ._contexts import NullContext, Patch, ReLUContext
from ._probes import OutputTap, Probe, attach_debug_probes

__all__ = [
    "NullContext",
    "Patch",
    "Probe",
    "ReLUContext",
    "attach_debug_probes",
    "get_backward_gradient",
    "get_module",
    "get_pointing_gradient",
    "gradient_to_saliency",
    "resize_saliency",
    "saliency",
]

Resize = Union[bool, tuple[int, int], list[int]]

#: Makes the context the backward pass runs in (TorchRay's ``context_builder``), e.g. a class.
ContextBuilder = Callable[[], AbstractContextManager[Any]]


def get_module(model: nn.Module, module: str | nn.Module) -> nn.Module | None:
    """``module`` itself if it is a module, ``model`` for ``""``, else the submodule of that name
    (``None`` if there is none)."""
    if isinstance(module, nn.Module):
        return module
    if not isinstance(module, str):
        raise TypeError(f"module must be a module name or an nn.Module, got {type(module).__name__}")
    return model if module == "" else dict(model.named_modules()).get(module)


def gradient_to_saliency(x: Tensor) -> Tensor:
    r"""Channel-max of the absolute gradient: :math:`s_{n,1,u} = \max_c |\partial x_{n,c,u}|`.

    ``x`` must carry the signal in ``x.grad`` (as in TorchRay).
    """
    if x.grad is None:
        raise ValueError("gradient_to_saliency needs a tensor whose .grad holds the signal")
    return x.grad.abs().amax(dim=1, keepdim=True)


def get_backward_gradient(pred_y: Tensor, y: Target) -> Tensor:
    """The seed for ``pred_y``: ``y`` itself if shaped like it, else a one-hot of the classes ``y``.

    ``y`` is anything that casts to integer class indices: an int, a 0-d tensor, a list or
    array, one index per example, or a single index for every example. The one-hot covers
    every spatial position of ``pred_y``.
    """
    if not isinstance(pred_y, Tensor):
        raise TypeError(f"pred_y must be a tensor, got {type(pred_y).__name__}")
    if isinstance(y, Tensor) and y.shape == pred_y.shape:
        return y
    indices = y if isinstance(y, Tensor) else torch.tensor(y, dtype=torch.long)
    indices = indices.reshape(-1)
    if indices.numel() == 1 and pred_y.dim() >= 1:
        indices = indices.expand(pred_y.shape[0])  # one class for the whole batch
    return seed_from_target(pred_y, indices)


def get_pointing_gradient(pred_y: Tensor, y: int, normalize: bool = True) -> Tensor:
    """The seed of the pointing game: ``exp(pred_y[0, y])`` at class ``y`` (summing to 1 if
    ``normalize``), zero elsewhere; ``pred_y`` is ``(1, C)`` or ``(1, C, H, W)``."""
    if not isinstance(pred_y, Tensor) or pred_y.dim() not in (2, 4) or pred_y.shape[0] != 1:
        raise ValueError("pred_y must be a (1, C) or (1, C, H, W) tensor")
    if isinstance(y, bool) or not isinstance(y, int):
        raise TypeError(f"y must be an int, got {type(y).__name__}")
    seed = torch.zeros_like(pred_y)
    weights = pred_y[0, y].exp()
    seed[0, y] = weights / weights.sum() if normalize else weights
    return seed


def resize_saliency(tensor: Tensor, saliency: Tensor, size: Resize, mode: str) -> Tensor:
    """``saliency`` resized to ``tensor``'s size (``size=True``), to ``(width, height)``, or not
    at all (``size=False``), with ``F.interpolate``'s ``mode``."""
    if size is False:
        return saliency
    if size is True:
        out_size = tuple(tensor.shape[2:])
    elif isinstance(size, (tuple, list)):
        out_size = tuple(size[::-1])  # (width, height) -> (height, width)
    else:
        raise ValueError(f"resize must be True, False or a (width, height) pair, got {size!r}")
    # align_corners is only for the interpolating modes; nearest and area take none.
    corners = False if mode in ("linear", "bilinear", "bicubic", "trilinear") else None
    return F.interpolate(saliency, out_size, mode=mode, align_corners=corners)


def _give_input(input: Tensor, signal: Tensor) -> None:
    """Store the signal in the caller's ``input.grad`` (TorchRay's side effect), also upstream."""
    if input.is_leaf:
        input.requires_grad_(True)
    else:  # the input was computed: the signal goes on to the tensors it came from
        torch.autograd.backward(input, signal)
        input.retain_grad()
    if input.grad is None:
        input.grad = signal
    else:
        input.grad.add_(signal)


def _first_edge(tap: OutputTap) -> GradientEdge | None:
    """The gradient edge of the saliency layer's (first) output; refuses what has none."""
    if tap.calls == 0:
        raise RuntimeError("the saliency layer did not run during the forward pass")
    if not isinstance(tap.values[0], Tensor):
        raise TypeError(f"the saliency layer returns {type(tap.values[0]).__name__}, not a tensor")
    return tap.edges[0]


def check_smooth(smooth: float) -> None:
    """Refuse a ``smooth`` that is no number in [0, 1] (sigma as a fraction of the map's side)."""
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)):
        raise TypeError(f"smooth must be a number (sigma as a fraction of the map's side), got {smooth!r}")
    if not (math.isfinite(smooth) and 0 <= smooth <= 1):
        raise ValueError(
            f"smooth={smooth} is out of range: it is the Gaussian's sigma as a fraction of the map's "
            "largest side (TorchRay's examples use 0.02); above 1 the Gaussian is wider than the map "
            "and averages it to a constant. Give a number in [0, 1]"
        )


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
    get_backward_gradient: Callable[[Tensor, Any], Tensor] = get_backward_gradient,
    debug: bool = False,
) -> Any:
    """Backprop saliency at the input or at ``saliency_layer`` (TorchRay's ``saliency``).

    Parameters
    ----------
    model : nn.Module
    input : Tensor
        The (N, C, H, W) batch. Its ``.grad`` is zeroed; when the map is taken at the input
        (or ``debug``, or ``input`` requires grad) it then holds the signed signal and
        ``input.requires_grad`` is True, as after TorchRay's ``saliency``.
    target : int, list, tensor
        Class indices, or the seed itself; passed to ``get_backward_gradient``.
    saliency_layer : str or nn.Module, default ""
        Module name or module whose output the map is taken at; ``""`` means the input. A
        module that runs several times is taken at its last call.
    resize : bool or (width, height), default False
        Resize the map to the input's size (``True``) or to ``(width, height)``.
    resize_mode : str, default "bilinear"
        ``F.interpolate``'s mode.
    smooth : float, default 0
        Gaussian smoothing, sigma as a fraction of the map's largest side.
    context_builder : callable, default NullContext
        Makes the context the forward and backward passes run in.
    gradient_to_saliency : callable, default gradient_to_saliency
        Gets the recorded tensor (the layer's output as the layer returned it) with the
        signal in ``.grad``; returns the map.
    get_backward_gradient : callable, default get_backward_gradient
        ``(model output, target) -> seed``.
    debug : bool, default False
        Also return every module's :class:`Probe`: outputs with their gradients.

    Returns
    -------
    Tensor or (Tensor, OrderedDict)
        The map, or ``(map, probes)`` with ``debug=True``.
    """
    check_smooth(smooth)
    if (input.is_leaf or input.retains_grad) and input.grad is not None:
        input.grad.zero_()  # as TorchRay does; the signal is then added to it
    check_model(model)
    at_input = isinstance(saliency_layer, str) and saliency_layer == ""
    layer = None
    if not at_input:
        found = get_module(model, saliency_layer)
        layer = find_layer(model, saliency_layer if found is None else found)[1]  # names what is wrong
    wants_input = at_input or debug or input.requires_grad  # TorchRay's probe on the input
    with removing([]) as handles:
        layer_tap = OutputTap(layer) if layer is not None else None
        taps = [(name, OutputTap(module)) for name, module in model.named_modules() if name and debug]
        handles.extend([layer_tap.handle] if layer_tap is not None else [])
        handles.extend(tap.handle for _, tap in taps)
        with recording(model, input, context_builder()) as forward:
            assert forward.output is not None
            seed = get_backward_gradient(forward.output, target)
            edges: list[GradientEdge | None] = [get_gradient_edge(forward.leaf) if wants_input else None]
            if layer_tap is not None:
                edges.append(_first_edge(layer_tap))
            for _, tap in taps:
                edges.extend(tap.edges)
            wanted = [edge for edge in edges if edge is not None]
            computed = iter(torch.autograd.grad(forward.output, wanted, seed, allow_unused=True))
            grads = [None if edge is None else next(computed) for edge in edges]
            if grads[0] is not None:
                _give_input(input, grads[0])
    signal = grads[1] if layer_tap is not None else grads[0]
    if signal is None:
        raise RuntimeError("the saliency layer (or input) does not influence the model's output")
    probed = input if layer_tap is None else layer_tap.with_gradients([signal])[0]
    probes = OrderedDict([("", Probe.holding(model, "input", [input]))])
    position = 2 if layer_tap is not None else 1
    for name, tap in taps:
        probes[name] = Probe.holding(tap.module, "output", tap.with_gradients(grads[position:]))
        position += len(tap.edges)
    saliency_map = gradient_to_saliency(probed)
    saliency_map = resize_saliency(input, saliency_map, resize, mode=resize_mode)
    if smooth > 0:
        sigma = smooth * max(saliency_map.shape[2:])
        saliency_map = imsmooth(saliency_map, sigma=sigma, padding_mode="replicate")
    return (saliency_map, probes) if debug else saliency_map
