"""Input-shift invariance (Kindermans et al. 2017): a constant input shift, absorbed by the first bias."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..checks import bias_of
from ..metrics import changed_fraction, relative_difference
from ..rules import BUILTIN_NAMES
from ._maps import rule_maps

__all__ = ["ShiftResult", "ShiftedInputConv2d", "input_shift", "shift_compensated"]


class ShiftedInputConv2d(nn.Module):
    r"""A convolution that takes ``x + c`` and computes what ``conv`` computes on ``x``.

    Kindermans et al.: the bias absorbs the shift, ``b' = b - W c``
    (``W c`` summed over the kernel). With zero padding the border pixels would see
    ``0`` instead of ``-c``, so the padding value becomes ``c``: then
    ``conv'(x + c) = conv(x)`` exactly, at every position.
    """

    def __init__(self, conv: nn.Conv2d, shift: float) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only convolutions with numeric zero padding are supported")
        self.shift = float(shift)
        self.padding = tuple(p for p in conv.padding[::-1] for _ in range(2))  # F.pad order
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        self.conv = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            (kh, kw),
            (sh, sw),
            0,
            (dh, dw),
            conv.groups,
            bias=True,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        new_bias = bias_of(self.conv)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(new_bias)
            new_bias.copy_(bias - self.shift * conv.weight.sum(dim=(1, 2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.pad(x, self.padding, value=self.shift))


def shift_compensated(model: nn.Module, shift: float, layer: str | None = None) -> nn.Module:
    """A deep copy of ``model`` that gives on ``x + shift`` exactly the outputs ``model`` gives on ``x``.

    Parameters
    ----------
    model : nn.Module
    shift : float
        The constant added to every input pixel.
    layer : str, optional
        The first convolution (default: the first ``nn.Conv2d`` in ``model``).
    """
    copy_ = copy.deepcopy(model)
    if layer is None:
        layer = next((n for n, m in copy_.named_modules() if isinstance(m, nn.Conv2d)), None)
        if layer is None:
            raise ValueError("the model has no nn.Conv2d to absorb the shift")
    parent_name, _, child = layer.rpartition(".")
    parent = copy_.get_submodule(parent_name)
    conv = getattr(parent, child)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"layer {layer!r} is {type(conv).__name__}, not nn.Conv2d")
    setattr(parent, child, ShiftedInputConv2d(conv, shift))
    return copy_.eval()


@dataclass
class ShiftResult:
    """Outputs and maps of a model on ``x`` and of its shift-compensated copy on ``x + shift``.

    Attributes
    ----------
    shift : float
    dtype : torch.dtype
        The precision both networks ran in.
    output_difference : float
        Largest ``|f(x) - f'(x + c)|`` over the batch's logits.
    map_difference : dict of str to float
        Per rule, :func:`deconvlab.metrics.relative_difference` of the two maps: largest
        ``|map - map'|`` divided by the largest ``|map|``.
    changed_fraction : dict of str to float
        Per rule, :func:`deconvlab.metrics.changed_fraction`: the fraction of map entries
        that differ by more than 1e-3 of the largest ``|map|``.
    input_x_gradient_difference : float
        Largest difference of input × gradient, relative as above: *not* invariant, ``(x + c)·g ≠ x·g``.
    """

    shift: float
    dtype: torch.dtype
    output_difference: float
    map_difference: dict[str, float]
    changed_fraction: dict[str, float]
    input_x_gradient_difference: float
    maps: dict[str, Tensor] = field(repr=False)
    shifted_maps: dict[str, Tensor] = field(repr=False)


def input_shift(
    model: nn.Module,
    images: Tensor,
    targets,
    shift: float = -1.0,
    rules: Sequence[str] = BUILTIN_NAMES,
    dtype: torch.dtype | None = torch.float64,
) -> ShiftResult:
    """Maps of ``model`` on ``x`` against maps of :func:`shift_compensated` on ``x + shift``.

    The two networks compute the same function of the image; all three rules give the
    same maps because their backward passes see the same ReLU inputs, the same
    max-pool switches and the same weights. Input × gradient changes by ``shift · g``.

    Parameters
    ----------
    dtype : torch.dtype or None, default float64
        Precision of the comparison (the model is deep-copied to it; ``model`` is not
        modified). In float32 the two networks' pre-activations differ by rounding
        (about 1e-7 relative), enough to flip the few ReLU gates and max-pool switches
        whose inputs lie within rounding of a tie; float64 makes that vanishingly rare.
        ``None`` keeps the model's own precision.
    """
    work = copy.deepcopy(model).eval()
    if dtype is not None:
        work, images = work.to(dtype), images.to(dtype)
    shifted = shift_compensated(work, shift)
    with torch.no_grad():
        out, out_shifted = work(images), shifted(images + shift)
    names = list(dict.fromkeys([*rules, "gradient"]))
    maps = rule_maps(work, images, targets, names)
    shifted_maps = rule_maps(shifted, images + shift, targets, names)
    diff = {rule: relative_difference(maps[rule], shifted_maps[rule]) for rule in rules}
    changed = {rule: changed_fraction(maps[rule], shifted_maps[rule]) for rule in rules}
    ixg = relative_difference(images * maps["gradient"], (images + shift) * shifted_maps["gradient"])
    return ShiftResult(
        float(shift),
        images.dtype,
        float((out - out_shifted).abs().max()),
        diff,
        changed,
        ixg,
        {rule: maps[rule] for rule in rules},
        {rule: shifted_maps[rule] for rule in rules},
    )
