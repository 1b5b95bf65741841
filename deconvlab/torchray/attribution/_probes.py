"""TorchRay's ``Probe`` and ``attach_debug_probes`` (re-exported by :mod:`.common`), and the tap
that :func:`.common.saliency` records layers with.

A :class:`Probe` is TorchRay's public tool: attached to a module, it keeps the tensors
going into (``target="input"``) or out of (``"output"``) the module's last call, in
``probe.data``, and makes autograd fill their ``.grad`` on the next ``backward()``.
:class:`OutputTap` is what ``saliency`` uses instead: it copies each output as the
module returned it and keeps its gradient edge, so that neither a later in-place
operation nor a second call of the module can change what was recorded.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.autograd.graph import GradientEdge, get_gradient_edge

__all__ = ["OutputTap", "Probe", "attach_debug_probes"]


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value]


def _differentiable(value: object) -> bool:
    return isinstance(value, Tensor) and (value.is_floating_point() or value.is_complex())


def _minus_contrast(contrast: Tensor, non_negative: bool, grad: Tensor) -> Tensor:
    """The gradient minus ``contrast`` (clamped at 0 if ``non_negative``)."""
    if grad.shape != contrast.shape:
        raise RuntimeError(f"contrast of shape {tuple(contrast.shape)} for a gradient of {tuple(grad.shape)}")
    delta = grad - contrast
    return delta.clamp(min=0) if non_negative else delta


def _catch(probe_ref: weakref.ref[Probe], tensors: object) -> None:
    probe = probe_ref()
    if probe is None:
        return
    probe.data = _as_list(tensors)
    for i, tensor in enumerate(probe.data):
        if not _differentiable(tensor):
            continue
        if not tensor.requires_grad:
            tensor.requires_grad_(True)
        tensor.retain_grad()
        contrast = probe.contrast[i] if i < len(probe.contrast) else None
        if contrast is not None:
            tensor.register_hook(partial(_minus_contrast, contrast, probe.non_negative_contrast))


class Probe:
    """Record the tensors into or out of a module's last call, with their gradients.

    Parameters
    ----------
    module : nn.Module
        The module to attach to (until :meth:`remove`, or until the probe is garbage-collected).
    target : {"input", "output"}
        Record the module's positional inputs or its outputs.

    Attributes
    ----------
    data : list of Tensor
        The recorded tensors; after ``backward()`` each has its gradient in ``.grad``.
    contrast : list of Tensor or None
        Optional, per recorded tensor: subtracted from its gradient as it flows back
        (clamped at 0 when ``non_negative_contrast``).

    Notes
    -----
    While attached, a module with an ``inplace`` flag (``nn.ReLU(inplace=True)``) runs out of
    place, so that the recorded tensors keep their values; :meth:`remove` restores the flag.
    """

    def __init__(self, module: nn.Module, target: str = "input") -> None:
        if target not in ("input", "output"):
            raise ValueError(f"target must be 'input' or 'output', got {target!r}")
        self.module: nn.Module | None = module
        self.target = target
        self.data: list[Any] = []
        self.contrast: list[Tensor | None] = []
        self.non_negative_contrast = False
        self.inplace = getattr(module, "inplace", None)
        if hasattr(module, "inplace"):
            setattr(module, "inplace", False)  # noqa: B010 (mypy: nn.Module has no such attribute)
        ref = weakref.ref(self)  # the hook must not keep the probe alive
        if target == "input":
            self._handle: Any = module.register_forward_pre_hook(lambda _, args: _catch(ref, args))
        else:
            self._handle = module.register_forward_hook(lambda _, args, output: _catch(ref, output))

    @classmethod
    def holding(cls, module: nn.Module, target: str, data: list[Any]) -> Probe:
        """A probe that is not attached and holds ``data`` (what ``saliency(debug=True)`` returns)."""
        probe = cls.__new__(cls)
        probe.module, probe.target, probe.data = module, target, data
        probe.contrast, probe.non_negative_contrast = [], False
        probe.inplace, probe._handle = None, None
        return probe

    def remove(self) -> None:
        """Detach from the module and restore its ``inplace`` flag (once; later calls do nothing)."""
        if self._handle is not None:
            if self.module is not None and hasattr(self.module, "inplace"):
                setattr(self.module, "inplace", self.inplace)  # noqa: B010
            self._handle.remove()
            self._handle = None
            self.module = None

    def __del__(self) -> None:
        if hasattr(self, "_handle"):
            self.remove()


def attach_debug_probes(model: nn.Module, debug: bool = False) -> OrderedDict[str, Probe] | None:
    """A :class:`Probe` on every module (the model's own on its input, the others on their
    outputs), by module name; ``None`` unless ``debug``."""
    if not debug:
        return None
    return OrderedDict(
        (name, Probe(module, target="input" if name == "" else "output"))
        for name, module in model.named_modules()
    )


class OutputTap:
    """Forward hook: a copy of each output of the module's last call, and its gradient edge.

    The copy is taken when the module returns, so a later in-place operation (a following
    ``ReLU(inplace=True)``) cannot overwrite it; the gradient edge is that of this very
    value. A module that runs twice is recorded at its last call, as TorchRay's probe is.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.calls = 0
        self.values: list[Any] = []
        self.edges: list[GradientEdge | None] = []
        self.handle = module.register_forward_hook(self)

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        self.calls += 1
        outputs = _as_list(output)
        self.values = [t.detach().clone() if isinstance(t, Tensor) else t for t in outputs]
        self.edges = [
            get_gradient_edge(t) if isinstance(t, Tensor) and t.requires_grad else None for t in outputs
        ]

    def with_gradients(self, grads: list[Tensor | None]) -> list[Any]:
        """The recorded values, each differentiable one given its gradient in ``.grad``."""
        data = []
        for value, grad in zip(self.values, grads):
            if _differentiable(value):
                value.requires_grad_(True)
                value.grad = grad
            data.append(value)
        return data
