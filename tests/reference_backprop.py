"""An independent reference for the three backward passes, written without autograd.

A network is a list of block specs. :func:`build` turns it into an ``nn.Module``
that spells its ReLUs in every way PyTorch allows; :func:`reference_signal`
runs the same network with functional ops, records what each layer needs, then
walks back by hand with the textbook backward of each layer:

* linear: ``W^T p``; convolution: ``conv_transpose2d`` (the "deconvolution");
* max-pooling: ``max_unpool2d`` through the recorded switches;
* ReLU: the rule's table entry, written here again from the papers;
* a fork (skip connection): the sum of the signals of both branches.

Nothing here calls deconvlab or autograd, so agreement is evidence, not tautology.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPELLINGS = (
    "module",
    "module_inplace",
    "shared_module",
    "F.relu",
    "F.relu_inplace",
    "F.relu_",
    "torch.relu",
    "torch.relu_",
    "Tensor.relu",
    "Tensor.relu_",
)


def relu_star(rule: str, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """ReLU*(x, p) from the papers, as ``where`` expressions."""
    zero = torch.zeros_like(p)
    if rule == "gradient":  # Simonyan et al.: the derivative of max(x, 0), closed at 0
        return torch.where(x > 0, p, zero)
    if rule == "deconvnet":  # Zeiler & Fergus: rectify the signal itself
        return torch.where(p > 0, p, zero)
    if rule == "guided_backprop":  # Springenberg et al.: both gates
        return torch.where((x > 0) & (p > 0), p, zero)
    raise ValueError(rule)


class _Relu(nn.Module):
    """Applies ReLU in the given spelling (shared modules come from the network)."""

    def __init__(self, spelling: str, shared: nn.ReLU) -> None:
        super().__init__()
        self.spelling = spelling
        self.module = {
            "module": nn.ReLU(),
            "module_inplace": nn.ReLU(inplace=True),
            "shared_module": shared,
        }.get(spelling)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = self.spelling
        if self.module is not None:
            return self.module(h)
        if s == "F.relu":
            return F.relu(h)
        if s == "F.relu_inplace":
            return F.relu(h, inplace=True)
        if s == "F.relu_":
            return F.relu_(h)
        if s == "torch.relu":
            return torch.relu(h)
        if s == "torch.relu_":
            return torch.relu_(h)
        if s == "Tensor.relu":
            return h.relu()
        return h.relu_()


class _Block(nn.Module):
    def __init__(self, spec: tuple, channels: int, shared: nn.ReLU) -> None:
        super().__init__()
        kind = spec[0]
        self.kind = kind
        if kind == "conv":
            _, out, kernel, stride, padding = spec
            self.conv = nn.Conv2d(channels, out, kernel, stride, padding)
        elif kind in ("skip_pre", "residual"):
            self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
            self.relu = _Relu(spec[1], shared)
        elif kind == "relu":
            self.relu = _Relu(spec[1], shared)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "conv":
            return self.conv(h)
        if self.kind == "pool":
            return F.max_pool2d(h, 2)
        if self.kind == "relu":
            return self.relu(h)
        z = self.conv(h)
        if self.kind == "skip_pre":  # the pre-activation feeds a ReLU and a skip path
            skip = z.clone()  # an in-place ReLU must not overwrite the skip branch
            return self.relu(z) + skip
        return self.relu(z) + h  # residual


class Network(nn.Module):
    def __init__(self, specs: list[tuple], channels: int, size: int, classes: int) -> None:
        super().__init__()
        shared = nn.ReLU(inplace=True)  # one instance reused wherever "shared_module" appears
        blocks = []
        for spec in specs:
            blocks.append(_Block(spec, channels, shared))
            channels, size = out_shape(spec, channels, size)
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels * size * size, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).flatten(1))


def out_shape(spec: tuple, channels: int, size: int) -> tuple[int, int]:
    if spec[0] == "conv":
        _, out, kernel, stride, padding = spec
        return out, (size + 2 * padding - kernel) // stride + 1
    if spec[0] == "pool":
        return channels, size // 2
    return channels, size


def build(specs: list[tuple], channels: int = 2, size: int = 8, classes: int = 3) -> Network:
    return Network(specs, channels, size, classes).double().eval()


def reference_signal(net: Network, x: torch.Tensor, seed: torch.Tensor, rule: str) -> torch.Tensor:
    """The rule's signal at ``x`` for the output seed ``seed``, by explicit backward steps."""
    with torch.no_grad():
        tape = []
        h = x
        for block in net.blocks:
            tape.append((block, h))
            h = _functional_forward(block, h, tape)
        flat_shape = h.shape
        p = (seed @ net.head.weight).view(flat_shape)
        for block, h_in, *saved in reversed(tape):
            p = _backward(block, h_in, saved, p, rule)
    return p


def _functional_forward(block: _Block, h: torch.Tensor, tape: list) -> torch.Tensor:
    if block.kind == "conv":
        return F.conv2d(h, block.conv.weight, block.conv.bias, block.conv.stride, block.conv.padding)
    if block.kind == "pool":
        out, switches = F.max_pool2d(h, 2, return_indices=True)
        tape[-1] = (*tape[-1], switches)
        return out
    if block.kind == "relu":
        return h.clamp(min=0)
    z = F.conv2d(h, block.conv.weight, block.conv.bias, 1, 1)
    tape[-1] = (*tape[-1], z)
    return z.clamp(min=0) + (z if block.kind == "skip_pre" else h)


def _conv_backward(conv_weight, stride, padding, p, in_size):
    """Transposed convolution; ``output_padding`` restores rows a strided forward read last."""
    stride = stride if isinstance(stride, int) else stride[0]
    padding = padding if isinstance(padding, int) else padding[0]
    kernel = conv_weight.shape[-1]
    extra = tuple(n - ((m - 1) * stride - 2 * padding + kernel) for n, m in zip(in_size, p.shape[2:]))
    return F.conv_transpose2d(p, conv_weight, stride=stride, padding=padding, output_padding=extra)


def _backward(block: _Block, h_in: torch.Tensor, saved: list, p: torch.Tensor, rule: str) -> torch.Tensor:
    if block.kind == "conv":
        conv = block.conv
        return _conv_backward(conv.weight, conv.stride, conv.padding, p, h_in.shape[2:])
    if block.kind == "pool":
        return F.max_unpool2d(p, saved[0], 2, output_size=h_in.shape[2:])
    if block.kind == "relu":
        return relu_star(rule, h_in, p)
    z = saved[0]
    p_z = relu_star(rule, z, p)
    if block.kind == "skip_pre":
        p_z = p_z + p  # both branches leave from z
        return _conv_backward(block.conv.weight, 1, 1, p_z, h_in.shape[2:])
    return _conv_backward(block.conv.weight, 1, 1, p_z, h_in.shape[2:]) + p  # residual
