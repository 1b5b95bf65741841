r"""TorchRay-compatible layer: same names, arguments, defaults and outputs.

A drop-in replacement for ``torchray.attribution.{common, gradient, deconvnet,
guided_backprop}``: code written for TorchRay runs with only its import lines
changed, e.g. ``from torchray.attribution.deconvnet import deconvnet`` becomes
``from deconvlab import deconvnet``.

:func:`saliency` follows TorchRay's recipe: probe the input (or the output of
``saliency_layer``), seed the backward pass with ``get_backward_gradient``,
backpropagate inside ``context_builder()``, turn the pseudo-gradient into a map
with ``gradient_to_saliency`` (default: channel-max of its absolute value,
Simonyan et al. 2014), then optionally resize and smooth it.

Where deconvlab differs, it follows the equations that TorchRay documents:

* guided backprop closes the gate at :math:`x = 0`
  (:math:`\operatorname{ReLU}^*(x, p) = p \cdot [x > 0] \cdot [p > 0]`); TorchRay's
  implementation lets the signal through there;
* every ReLU spelling is covered (TorchRay misses ``Tensor.relu``), in-place
  ReLUs stay in place, and nothing is patched process-wide;
* the caller's input keeps its ``.grad`` and the parameters get no gradient:
  the signal is computed with :func:`torch.autograd.grad`.

References
----------
TorchRay, https://github.com/facebookresearch/TorchRay (``torchray.attribution``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attribution import _input_leaf, _LayerProbe, run_model
from .checks import Target, check_input, check_model, find_layer, seed_from_target
from .context import backward_rule
from .model_state import evaluating, removing
from .relu import DeConvNetReLU, GuidedBackpropReLU

__all__ = [
    "DeConvNetContext",
    "DeConvNetReLU",
    "GuidedBackpropContext",
    "GuidedBackpropReLU",
    "NullContext",
    "Probe",
    "deconvnet",
    "get_backward_gradient",
    "get_example_data",
    "gradient",
    "gradient_to_saliency",
    "guided_backprop",
    "imsmooth",
    "plot_example",
    "resize_saliency",
    "saliency",
]


class NullContext(nullcontext):
    """No change to backpropagation: the plain gradient (TorchRay's ``NullContext``)."""

    def __init__(self) -> None:
        super().__init__()


class DeConvNetContext(backward_rule):
    r"""DeConvNet context: ``ReLU*(x, p) = p · [p > 0]`` (Zeiler and Fergus, ECCV 2014)."""

    def __init__(self) -> None:
        super().__init__("deconvnet")


class GuidedBackpropContext(backward_rule):
    r"""Guided-backprop context: ``ReLU*(x, p) = p · [x > 0] · [p > 0]`` (Springenberg et al., 2015)."""

    def __init__(self) -> None:
        super().__init__("guided_backprop")


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


def resize_saliency(
    tensor: Tensor, saliency: Tensor, size: bool | tuple[int, int], mode: str
) -> Tensor:
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
    resize: bool | tuple[int, int] = False,
    resize_mode: str = "bilinear",
    smooth: float = 0,
    context_builder: Callable[[], object] = NullContext,
    gradient_to_saliency: Callable[[Tensor], Tensor] = gradient_to_saliency,
    get_backward_gradient: Callable[[Tensor, Target], Tensor] = get_backward_gradient,
    debug: bool = False,
) -> Tensor | tuple[Tensor, OrderedDict]:
    """Backprop saliency at the input or at ``saliency_layer`` (TorchRay's ``saliency``).

    Returns the (N, 1, H, W) map, or ``(map, probes)`` with ``debug=True`` where
    ``probes`` maps every module name to a :class:`Probe` of its outputs.
    """
    check_model(model)
    check_input(input)
    leaf = _input_leaf(input)
    with evaluating(model), removing([]) as handles, torch.enable_grad():
        probes = OrderedDict()
        if debug:
            probes.update((name, Probe(module)) for name, module in model.named_modules())
            handles.extend(probe.handle for probe in probes.values())
        layer_probe = None
        if saliency_layer != "":
            layer_probe = _LayerProbe(*find_layer(model, saliency_layer), stop=False)
            handles.append(layer_probe.handle)
        with context_builder():
            output = run_model(model, leaf, layer_probe)
            seed = get_backward_gradient(output, target)
            wrt = layer_probe.target() if layer_probe is not None else leaf
            (signal,) = torch.autograd.grad(output, wrt, seed)
        probed = layer_probe.output if layer_probe is not None else leaf
        saliency_map = gradient_to_saliency(_carrier(probed, signal))
    saliency_map = resize_saliency(input, saliency_map, resize, resize_mode)
    if smooth > 0:
        saliency_map = imsmooth(saliency_map, sigma=smooth * max(saliency_map.shape[2:]))
    return (saliency_map, probes) if debug else saliency_map


def gradient(*args, context_builder: Callable[[], object] = NullContext, **kwargs):
    """Gradient saliency (Simonyan et al., 2014); same arguments as :func:`saliency`."""
    return saliency(*args, context_builder=context_builder, **kwargs)


def deconvnet(*args, context_builder: Callable[[], object] = DeConvNetContext, **kwargs):
    """DeConvNet saliency (Zeiler and Fergus, 2014); same arguments as :func:`saliency`."""
    return saliency(*args, context_builder=context_builder, **kwargs)


def guided_backprop(*args, context_builder: Callable[[], object] = GuidedBackpropContext, **kwargs):
    """Guided-backprop saliency (Springenberg et al., 2015); same arguments as :func:`saliency`."""
    return saliency(*args, context_builder=context_builder, **kwargs)


def get_example_data() -> tuple[nn.Module, Tensor, int, str]:
    """``(model, x, category_id, class_name)`` like ``torchray.benchmark.get_example_data``.

    Offline: the shipped teaching model and one image of the shapes dataset.
    """
    from .data import shapes
    from .models import teaching_model

    model = teaching_model()
    sample = shapes(1, seed=7)
    category_id = int(sample.labels[0])
    return model, sample.images, category_id, sample.classes[category_id]


def plot_example(
    input: Tensor,
    saliency: Tensor,
    method: str,
    category_id: int | list[int],
    show_plot: bool = False,
    save_path: str | None = None,
):
    """Each image beside its saliency map, one row per example (``torchray.benchmark.plot_example``)."""
    import matplotlib.pyplot as plt

    categories = [category_id] if isinstance(category_id, int) else list(category_id)
    batch = len(input)
    figure, axes = plt.subplots(batch, 2, figsize=(6, 3 * batch), squeeze=False)
    for row, (image, heat) in enumerate(zip(input.detach().float().cpu(), saliency.detach().float().cpu())):
        image = (image - image.min()) / (image.max() - image.min() + 1e-12)
        axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
        axes[row, 0].set_title(f"class {categories[row % len(categories)]}")
        axes[row, 1].imshow(heat[0].numpy(), cmap="jet")
        axes[row, 1].set_title(method)
        for axis in axes[row]:
            axis.axis("off")
    if save_path is not None:
        figure.savefig(save_path, bbox_inches="tight")
    if show_plot:
        plt.show()
    return figure
