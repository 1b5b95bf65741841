"""Validation of models, inputs, targets and layers: every error names the problem.

A saliency map computed from a wrong target or a silently ignored layer looks
just as plausible as a right one, so :func:`deconvlab.attribute` checks its
arguments before it runs anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Target", "bias_of", "check_batch", "check_input", "check_model", "find_layer", "seed_from_target"]

Target = Union[int, Sequence[int], np.ndarray, Tensor]


def check_model(model: nn.Module) -> None:
    """Reject what a backward rule cannot be applied to."""
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise TypeError(
            "TorchScript models are not supported: their ReLUs run inside the compiled graph, "
            "where no backward rule can reach them; pass the original Python nn.Module instead"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def check_input(x: Tensor) -> None:
    """Reject inputs that would give a silently wrong or meaningless signal."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x has dtype {x.dtype}; the signal is a derivative and needs a floating-point "
            "input: convert images first, e.g. x.float() / 255"
        )
    if x.dim() < 2:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; it needs a leading batch dimension, e.g. x[None]"
        )


def check_batch(output: Tensor, x: Tensor) -> None:
    """The output must have one row per example of ``x``."""
    if isinstance(output, Tensor) and output.dim() >= 1 and output.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model's output has batch size {output.shape[0]} but x has {x.shape[0]} examples; "
            f"does x (shape {tuple(x.shape)}) have its leading batch dimension?"
        )


def _class_indices(target: Target, batch: int, classes: int) -> Tensor:
    if isinstance(target, bool):
        raise TypeError("target must be a class index, a list of them, or a seed tensor; got a bool")
    if isinstance(target, (int, np.integer)):
        indices = torch.full((batch,), int(target), dtype=torch.long)
    else:
        indices = torch.as_tensor(np.asarray(target) if not isinstance(target, Tensor) else target)
        if indices.is_floating_point() or indices.dtype == torch.bool:
            raise TypeError(
                f"target of dtype {indices.dtype} and shape {tuple(indices.shape)} is neither class "
                "indices (integers) nor a seed tensor shaped like the model's output"
            )
        if indices.dim() != 1:
            raise ValueError(
                f"target has shape {tuple(indices.shape)}; give an int, one class per example "
                "(a list or 1-D tensor), or a seed tensor shaped like the model's output"
            )
        if len(indices) != batch:
            raise ValueError(f"target has {len(indices)} entries but the batch has {batch} examples")
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        raise IndexError(
            f"target {indices[bad][0].item()} is out of range for an output with {classes} "
            f"classes (valid: 0..{classes - 1})"
        )
    return indices.long()


def seed_from_target(output: Tensor, target: Target) -> Tensor:
    """The tensor to backpropagate from ``output`` for ``target``.

    ``target`` is an int (same class for the whole batch), a list or 1-D tensor
    (one class per example), or a tensor shaped like ``output``, used as it is.
    For outputs with spatial dimensions the one-hot seed covers every position.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, it returned {type(output).__name__}")
    if output.dim() < 2:
        raise ValueError(
            f"the model's output has shape {tuple(output.shape)}; expected (batch, classes, ...)"
        )
    if isinstance(target, Tensor) and target.shape == output.shape and target.is_floating_point():
        return target.to(dtype=output.dtype, device=output.device)
    indices = _class_indices(target, output.shape[0], output.shape[1]).to(output.device)
    index = indices.view(-1, *([1] * (output.dim() - 1))).expand(-1, 1, *output.shape[2:])
    return torch.zeros_like(output).scatter_(1, index, 1.0)


def find_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Resolve ``layer`` (a module path like ``"features.10"`` or a module) in ``model``."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path string or a module, got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [name for name in modules if name]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"unknown layer {layer!r}; the model's layers are: {shown}")
    return layer, modules[layer]


def bias_of(layer: nn.Conv2d | nn.Linear) -> Tensor:
    """``layer.bias``; refuses a layer built with ``bias=False`` (whose ``.bias`` is None)."""
    if layer.bias is None:
        raise ValueError(f"this {type(layer).__name__} has no bias (it was built with bias=False)")
    return layer.bias
