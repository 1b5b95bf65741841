r"""Looking inside a CNN the way Zeiler and Fergus did: switches, transposed convolutions, top-k.

Zeiler and Fergus [DECONV]_ (§2.1) run a "deconvnet" attached to each layer of a CNN. Read with
today's vocabulary, each of its three operations is a piece of the ordinary backward pass:

* **unpooling** puts each pooled value back where the maximum came from (the *switches*
  recorded by the forward max-pooling) and zeros elsewhere: that is exactly the gradient of
  max-pooling (:func:`pool_backward_by_unpooling` vs :func:`pool_backward_by_autograd`);
* **filtering** with the transposed filters is the gradient of the convolution with respect to
  its input, :func:`torch.nn.functional.conv_transpose2d` (:func:`conv_backward_by_transposed_conv`
  vs :func:`conv_backward_by_autograd`);
* **rectification** applies ReLU to the signal coming down, ``ReLU*(x, p) = p · [p > 0]``; that
  one step is the only departure from the gradient, ``p · [x > 0]`` (guided backprop uses
  ``p · [x > 0] · [p > 0]``), see :mod:`deconvlab.rules`.

Their figures show, for one channel of one layer, the 9 images of a dataset that activate it most,
and for each the projection of its strongest unit back to pixels (every other activation of the
layer set to zero). :func:`channel_maxima` computes every channel's strongest activation in every
image in one pass over the dataset, :meth:`ChannelMaxima.top` ranks them, :func:`top_class_share`
says how class-specific each channel's favourite images are, and :func:`project_top` projects the
top ``k`` with :func:`deconvlab.project`. A projection never leaves the unit's
receptive field (:func:`receptive_field`): the backward of a 3x3 convolution or a 2x2 pooling only
reaches the pixels that fed it.

References
----------
.. [DECONV] Zeiler and Fergus, *Visualizing and Understanding Convolutional Networks*, ECCV 2014,
   https://doi.org/10.1007/978-3-319-10590-1_53.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attribution import project
from .checks import (
    as_array,
    as_int,
    check_images,
    check_model,
    check_rule_list,
    find_layer,
    forward_checks,
    renaming,
)
from .model_state import evaluating, removing
from .rules import RuleLike

__all__ = [
    "ChannelMaxima",
    "ReceptiveField",
    "TopActivations",
    "channel_maxima",
    "conv_backward_by_autograd",
    "conv_backward_by_transposed_conv",
    "pool_backward_by_autograd",
    "pool_backward_by_unpooling",
    "project_top",
    "receptive_field",
    "top_class_share",
]


# --------------------------------------------------------------------------------------------
# switches: the backward of max-pooling is unpooling
# --------------------------------------------------------------------------------------------


def pool_backward_by_unpooling(
    x: Tensor, grad_output: Tensor, kernel_size: int = 2, stride: int | None = None
) -> Tensor:
    """Zeiler–Fergus unpooling: send ``grad_output`` back through the max-pool switches.

    The forward :func:`~torch.nn.functional.max_pool2d` with ``return_indices=True`` records,
    for each window, where its maximum was (the "switches"); :func:`~torch.nn.functional.max_unpool2d`
    writes each value of ``grad_output`` there and zeros everywhere else.

    Parameters
    ----------
    x : Tensor
        Input of the max-pooling, ``(N, C, H, W)``.
    grad_output : Tensor
        Signal arriving at the pooled output, shaped like ``max_pool2d(x)``.
    kernel_size, stride : int
        Pooling window and step (``stride`` defaults to ``kernel_size``). With overlapping
        windows (``stride < kernel_size``) a switch can be chosen by two windows; unpooling then
        keeps one value where the gradient adds both, so the two agree only for
        non-overlapping windows, the case of Zeiler and Fergus' network and of VGG.

    Returns
    -------
    Tensor
        Shaped like ``x``.
    """
    stride = kernel_size if stride is None else stride
    _, switches = F.max_pool2d(x, kernel_size, stride, return_indices=True)
    return F.max_unpool2d(grad_output, switches, _pair(kernel_size), _pair(stride), output_size=x.shape[-2:])


def pool_backward_by_autograd(
    x: Tensor, grad_output: Tensor, kernel_size: int = 2, stride: int | None = None
) -> Tensor:
    """The gradient of ``max_pool2d(x)`` with respect to ``x``, seeded with ``grad_output``."""
    stride = kernel_size if stride is None else stride
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(F.max_pool2d(leaf, kernel_size, stride), leaf, grad_output)
    return grad


# --------------------------------------------------------------------------------------------
# the backward of a convolution is the transposed convolution
# --------------------------------------------------------------------------------------------


def conv_backward_by_transposed_conv(
    grad_output: Tensor,
    weight: Tensor,
    input_size: Sequence[int],
    stride: int = 1,
    padding: int = 0,
) -> Tensor:
    """Zeiler–Fergus filtering: the transposed convolution with the layer's own filters.

    ``conv_transpose2d(p, W)`` computes ``Wᵀ p``, the adjoint of the convolution ``x -> W x``.
    With a stride, several input sizes give the same output size; ``output_padding`` picks
    ``input_size``.

    Parameters
    ----------
    grad_output : Tensor
        Signal at the convolution's output, ``(N, C_out, H', W')``.
    weight : Tensor
        The convolution's filters, ``(C_out, C_in, k, k)``.
    input_size : sequence of int
        ``(H, W)`` of the convolution's input.
    stride, padding : int
        As in the forward :func:`~torch.nn.functional.conv2d`.

    Returns
    -------
    Tensor
        ``(N, C_in, H, W)``.
    """
    kernel = weight.shape[-2:]
    output_padding = tuple(
        size - ((out - 1) * stride - 2 * padding + k)
        for size, out, k in zip(input_size, grad_output.shape[-2:], kernel)
    )
    return F.conv_transpose2d(
        grad_output, weight, stride=stride, padding=padding, output_padding=output_padding
    )


def conv_backward_by_autograd(
    x: Tensor, weight: Tensor, grad_output: Tensor, stride: int = 1, padding: int = 0
) -> Tensor:
    """The gradient of ``conv2d(x, weight)`` with respect to ``x``, seeded with ``grad_output``."""
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        output = F.conv2d(leaf, weight.detach(), stride=stride, padding=padding)
        (grad,) = torch.autograd.grad(output, leaf, grad_output)
    return grad


# --------------------------------------------------------------------------------------------
# receptive fields
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """Which pixels a unit of a layer can see.

    Unit ``i`` (along one axis) sees the input pixels ``i * jump + offset`` to
    ``i * jump + offset + size - 1`` (before clipping to the image).

    Attributes
    ----------
    size, jump, offset : tuple of int
        Per spatial axis ``(rows, columns)``.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]

    def box(self, position: Sequence[int], image_size: Sequence[int]) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``, half-open and clipped to the image, of unit ``position``."""
        bounds = []
        for axis in range(2):
            start = int(position[axis]) * self.jump[axis] + self.offset[axis]
            stop = start + self.size[axis]
            bounds += [max(start, 0), min(stop, int(image_size[axis]))]
        return bounds[0], bounds[1], bounds[2], bounds[3]

    def mask(self, position: Sequence[int], image_size: Sequence[int]) -> Tensor:
        """Boolean ``(H, W)`` mask of the pixels unit ``position`` sees."""
        top, bottom, left, right = self.box(position, image_size)
        inside = torch.zeros(int(image_size[0]), int(image_size[1]), dtype=torch.bool)
        inside[top:bottom, left:right] = True
        return inside


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity)


def receptive_field(model: nn.Module, layer: str | nn.Module) -> ReceptiveField:
    """The receptive field of one unit of ``layer``, computed from the architecture.

    The model must be a chain (each layer feeds the next, as in AlexNet, VGG and the teaching
    model) whose leaf modules are registered in the order they run. Composing layer by layer,
    a layer with kernel ``k``, stride ``s``, padding ``q`` and dilation ``d`` maps
    ``(size, jump, offset)`` to ``(size + d (k - 1) jump, jump s, offset - q jump)``.

    Parameters
    ----------
    model : nn.Module
    layer : str or nn.Module
        A layer of ``model`` (module path such as ``"features.12"`` or the module).

    Returns
    -------
    ReceptiveField

    Raises
    ------
    TypeError
        ``model`` is no ``nn.Module``; ``layer`` is no module path or module.
    ValueError
        ``layer`` is not in the model; a module before ``layer`` mixes all positions (a linear or
        adaptive pooling layer) or is of a kind whose geometry is unknown.
    """
    check_model(model)
    name, target = find_layer(model, layer)
    size, jump, offset = [1, 1], [1, 1], [0, 0]
    last_leaf = [m for m in target.modules() if not list(m.children())][-1]
    for leaf_name, module in model.named_modules():
        if list(module.children()):
            continue
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            if isinstance(module.padding, str):
                raise ValueError(
                    f"cannot compute a receptive field through {leaf_name!r}: its padding is "
                    f"{module.padding!r}; only numeric padding is supported"
                )
            k, s, q = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            d = _pair(getattr(module, "dilation", 1))
            for a in range(2):
                size[a] += d[a] * (k[a] - 1) * jump[a]
                offset[a] -= q[a] * jump[a]
                jump[a] *= s[a]
        elif not isinstance(module, _POINTWISE):
            raise ValueError(
                f"cannot compute a receptive field through {leaf_name!r} ({type(module).__name__}) "
                f"on the way to layer {name!r}; only Conv2d, MaxPool2d, AvgPool2d and pointwise layers "
                "are known"
            )
        if module is last_leaf:
            break
    return ReceptiveField((size[0], size[1]), (jump[0], jump[1]), (offset[0], offset[1]))


# --------------------------------------------------------------------------------------------
# top-k activating images
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopActivations:
    """The images that activate one channel most.

    Attributes
    ----------
    indices : Tensor
        ``(k,)`` indices into the image set, strongest first.
    values : Tensor
        ``(k,)`` the channel's maximum activation in each of these images.
    positions : Tensor
        ``(k, 2)`` where that maximum is, ``(row, column)`` in the layer's feature map.
    """

    indices: Tensor
    values: Tensor
    positions: Tensor


@dataclass(frozen=True)
class ChannelMaxima:
    """Every channel's strongest activation in every image of a set, for one layer.

    Attributes
    ----------
    values : Tensor
        ``(N, C)``: the maximum over positions of channel ``c`` in image ``n``.
    positions : Tensor
        ``(N, C, 2)``: its ``(row, column)`` (the first one on ties, in row-major order).
    shape : tuple of int
        ``(C, H, W)`` of the layer's output.
    """

    values: Tensor
    positions: Tensor
    shape: tuple[int, ...]

    def top(self, channel: int, k: int = 9) -> TopActivations:
        """The ``k`` images whose maximum in ``channel`` is largest, strongest first.

        ``TypeError`` if ``channel`` or ``k`` is no integer, ``ValueError`` if ``k < 1``,
        ``IndexError`` if ``channel`` is out of range.
        """
        channel = as_int("channel", channel)
        channels = self.values.shape[1]
        if not 0 <= channel < channels:
            raise IndexError(f"channel {channel} is out of range for a layer with {channels} channels")
        k = min(as_int("k", k, minimum=1), self.values.shape[0])
        values, indices = self.values[:, channel].topk(k)
        return TopActivations(indices, values, self.positions[indices, channel])


def _summarise(name: str, output: object) -> tuple[Tensor, Tensor]:
    if not isinstance(output, Tensor) or output.dim() != 4:
        shown = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ValueError(
            f"layers: layer {name!r} outputs {shown}, but channel_maxima needs convolutional layers, "
            "whose outputs are (N, C, H, W)"
        )
    flat = output.detach().flatten(2)
    values, index = flat.max(dim=2)
    width = output.shape[-1]
    return values, torch.stack([index // width, index % width], dim=-1)


@torch.no_grad()
def channel_maxima(
    model: nn.Module,
    images: Tensor,
    layers: Sequence[str | nn.Module],
    batch_size: int = 128,
) -> dict[str, ChannelMaxima]:
    """Per-channel maxima and their positions for several layers, in one pass over ``images``.

    Only ``(N, C)`` values and positions are kept, never the feature maps, so a few thousand
    images fit in a few MB. The forward pass stops after the deepest requested layer.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode, restored afterwards.
    images : Tensor
        ``(N, 3, H, W)`` images.
    layers : sequence of str or nn.Module
        Convolutional layers (outputs ``(N, C, H, W)``), e.g. the teaching model's ReLUs.
    batch_size : int
        Images per forward pass (bounds memory).

    Returns
    -------
    dict of str to ChannelMaxima
        Keyed by module path.

    Raises
    ------
    TypeError
        ``model`` is no ``nn.Module``; ``images`` is no floating-point tensor, or its dtype is not
        the model's; ``layers`` is no list (a single name is refused: pass ``[name]``), or holds
        something that is no layer; ``batch_size`` is no integer.
    ValueError
        ``images`` is no ``(N, C, H, W)`` batch the model takes (an image without its batch
        dimension is said so); ``layers`` is empty, names an unknown layer or one whose output
        is not ``(N, C, H, W)``; ``batch_size < 1``.
    """
    check_model(model)
    check_images(images)
    batch_size = as_int("batch_size", batch_size, minimum=1)
    if isinstance(layers, (str, nn.Module)):
        raise TypeError(
            f"layers takes a list of layers, got {layers!r:.60}; for one layer pass layers=[{layers!r:.60}]"
        )
    if not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a list of module paths or modules, got {type(layers).__name__}")
    if not layers:
        raise ValueError("layers is empty; give at least one layer, e.g. layers=['features.4']")
    resolved = [find_layer(model, layer, f"layers[{i}]") for i, layer in enumerate(layers)]
    parts: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name, _ in resolved}
    shapes: dict[str, tuple[int, ...]] = {}
    remaining: set[str] = set()

    class _Done(Exception):
        pass

    def hook_for(name: str):
        def hook(module: nn.Module, args: object, output: Tensor) -> None:
            parts[name].append(_summarise(name, output))
            shapes[name] = tuple(output.shape[1:])
            remaining.discard(name)
            if not remaining:
                raise _Done

        return hook

    with evaluating(model), removing([]) as handles, forward_checks(model, images, "images"):
        handles.extend(module.register_forward_hook(hook_for(name)) for name, module in resolved)
        for start in range(0, images.shape[0], batch_size):
            remaining.update(parts)
            try:
                model(images[start : start + batch_size])
            except _Done:
                pass
    return {
        name: ChannelMaxima(
            torch.cat([v for v, _ in chunks]), torch.cat([p for _, p in chunks]), shapes[name]
        )
        for name, chunks in parts.items()
    }


def top_class_share(maxima: ChannelMaxima, labels: Tensor, k: int = 9) -> Tensor:
    """For each channel, the share of its top-``k`` images that show its most common class.

    Zeiler and Fergus (§4, Fig. 2) observe that deeper layers respond to more class-specific
    patterns. With ``c`` classes, ``k`` images drawn at random give about
    ``E[max class count] / k`` (about 0.35 for 9 images of 6 equally likely classes).

    Parameters
    ----------
    maxima : ChannelMaxima
        From :func:`channel_maxima`.
    labels : Tensor
        ``(N,)`` class of each image.
    k : int, default 9

    Returns
    -------
    Tensor
        ``(C,)`` shares in ``[1/k, 1]``; NaN for a channel that never fires (no top images).

    Raises
    ------
    TypeError
        ``maxima`` is no :class:`ChannelMaxima`; ``labels`` holds no integers; ``k`` is no integer.
    ValueError
        ``labels`` is not ``(N,)`` with one non-negative class per image of ``maxima``; ``k < 1``.
    """
    if not isinstance(maxima, ChannelMaxima):
        raise TypeError(f"maxima must be a ChannelMaxima (from channel_maxima), got {type(maxima).__name__}")
    labels = torch.as_tensor(as_array("labels", labels, {1: "(N,): one class per image"}, kinds="iu"))
    k = as_int("k", k, minimum=1)
    if len(labels) != maxima.values.shape[0]:
        raise ValueError(
            f"labels holds {len(labels)} classes but maxima covers {maxima.values.shape[0]} images"
        )
    if int(labels.min()) < 0:
        raise ValueError(f"labels holds the negative class {int(labels.min())}; classes are 0, 1, ...")
    classes = int(labels.max()) + 1
    shares = torch.full((maxima.values.shape[1],), float("nan"))
    for channel in range(maxima.values.shape[1]):
        top = maxima.top(channel, k)
        if float(top.values[0]) > 0:
            counts = torch.bincount(labels[top.indices], minlength=classes)
            shares[channel] = counts.max().item() / len(top.indices)
    return shares


def project_top(
    model: nn.Module,
    images: Tensor,
    layer: str | nn.Module,
    channel: int,
    k: int = 9,
    rules: Sequence[RuleLike] = ("deconvnet", "guided_backprop"),
    maxima: ChannelMaxima | None = None,
) -> tuple[TopActivations, dict[str, Tensor]]:
    """Zeiler and Fergus' figure: the top ``k`` images of a channel and their projections.

    Each image's strongest unit of ``channel`` is projected back to pixels with
    :func:`deconvlab.project` (``position="max"``); all ``k`` images go through one forward
    pass, which every rule shares.

    Parameters
    ----------
    model, images, layer, channel
        As in :func:`channel_maxima` and :func:`deconvlab.project`.
    k : int
        How many images.
    rules : list of str or Rule
        Backward rules; by default DeConvNet and guided backprop.
    maxima : ChannelMaxima, optional
        Precomputed :func:`channel_maxima` of ``layer`` over ``images`` (saves the pass).

    Returns
    -------
    (TopActivations, dict of str to Tensor)
        The ranking and the projections, ``(k, 3, H, W)`` per rule, keyed by canonical name.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`channel_maxima` and :func:`deconvlab.project`; ``k`` is no integer ``>= 1``;
        ``maxima`` is no :class:`ChannelMaxima` of these images.
    """
    check_model(model)
    check_images(images)
    channel, k = as_int("channel", channel), as_int("k", k, minimum=1)
    rules = check_rule_list(rules)
    if maxima is None:
        name, _ = find_layer(model, layer)
        maxima = channel_maxima(model, images, [name])[name]
    elif not isinstance(maxima, ChannelMaxima):
        raise TypeError(
            f"maxima must be a ChannelMaxima (from channel_maxima) or None, got {type(maxima).__name__}"
        )
    elif maxima.values.shape[0] != images.shape[0]:
        raise ValueError(f"maxima covers {maxima.values.shape[0]} images but images holds {images.shape[0]}")
    top = maxima.top(channel, k)
    with renaming("images"):
        return top, project(model, images[top.indices], layer, channel, position="max", rules=rules)
