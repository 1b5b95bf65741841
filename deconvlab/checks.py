"""Validation of models, inputs, targets, layers and every other argument: each error names the problem.

A saliency map computed from a wrong target or a silently ignored layer looks
just as plausible as a right one, so :func:`deconvlab.attribute` checks its
arguments before it runs anything.

**The contract for bad arguments.** deconvlab's public functions refuse a bad argument
with one of three built-in exceptions, whose message names the parameter (``target``,
``x``, ``rule``, ``layer``, ``channel``, ...; an item of a list as ``rules[1]``) and says
what to pass instead:

=============  ===================================================================
``TypeError``  the wrong kind of value: ``None`` where a class index is needed, a
               string for a target, a float for a channel, an integer image
``ValueError`` the right kind, a wrong value: an unknown rule or layer, a shape that
               does not fit (an image without its batch dimension), a wrong length
``IndexError`` an index out of range: a target class, a channel, a position
=============  ===================================================================

Subclasses of these may be raised (e.g. :class:`deconvlab.models.WeightsHashError`, a
``ValueError``); a ``RuntimeError`` means a failure that no argument explains (a model
that breaks, a layer that never runs). Each function's docstring lists its errors under
"Raises". ``tests/test_bad_input.py`` throws random bad arguments at the top-level functions
(rule maps, Grad-CAM and SmoothGrad among them), :mod:`~deconvlab.metrics`,
:mod:`~deconvlab.zeiler_fergus`, :mod:`~deconvlab.data`, :mod:`~deconvlab.models`,
:mod:`~deconvlab.viz`, the widgets and the "guided from layer k" functions of
:mod:`~deconvlab.sanity`, and checks all of this.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Union

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Inputs",
    "Target",
    "Targets",
    "as_array",
    "as_bool",
    "as_choice",
    "as_int",
    "as_real",
    "as_str",
    "bias_of",
    "check_batch",
    "check_batch_dimension",
    "check_forward_args",
    "check_images",
    "check_input",
    "check_inputs",
    "check_model",
    "check_position",
    "check_rule_list",
    "check_target",
    "check_targets",
    "find_layer",
    "forward_checks",
    "renaming",
    "seed_from_target",
    "seeds_from_targets",
    "top_classes",
]

#: A target (Captum's conventions): a class for the whole batch, one per example, one unit
#: ``(c, i, j)`` of an output with more than two dimensions (or one per example), or a seed tensor.
Target = Union[int, Sequence[int], tuple[int, ...], Sequence[tuple[int, ...]], np.ndarray, Tensor]
#: Several targets (``targets=``): a list of targets, or ``"topK"`` (the K highest-scoring classes).
Targets = Union[str, Sequence[Target], np.ndarray, Tensor]
#: A model's input: a tensor, or a tuple of them for a model with several inputs.
Inputs = Union[Tensor, tuple[Tensor, ...]]


def check_model(model: nn.Module) -> None:
    """Reject what a backward rule cannot be applied to."""
    if isinstance(model, (torch.jit.ScriptModule, torch.jit.ScriptFunction)):
        raise TypeError(
            "model is a TorchScript model, which is not supported: its ReLUs run inside the compiled "
            "graph, where no backward rule can reach them; pass the original Python nn.Module instead"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")


def check_input(x: Tensor, name: str = "x") -> None:
    """Reject inputs that would give a silently wrong or meaningless signal (``name``: the parameter)."""
    if not isinstance(x, Tensor):
        hint = f": convert it, e.g. torch.from_numpy({name}).float()" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}{hint}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} has dtype {x.dtype}; the signal is a derivative and needs a floating-point "
            f"input: convert images first, e.g. {name}.float() / 255"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}; it needs a leading batch dimension, e.g. {name}[None]"
        )


def check_inputs(model: nn.Module, x: Inputs) -> tuple[Tensor, ...]:
    """``x`` as a tuple of inputs, each checked as :func:`check_input` does (named ``x[i]`` in a tuple).

    Raises
    ------
    TypeError
        ``x`` is no tensor nor tuple of tensors (a list of tensors is told to be a tuple), or an
        input is not floating-point.
    ValueError
        An empty tuple; an input without a batch dimension; inputs with different batch sizes.
    """
    if not isinstance(x, tuple):
        if isinstance(x, list) and x and all(isinstance(item, Tensor) for item in x):
            raise TypeError(
                "x is a list of tensors; for a model with several inputs pass a tuple: x=tuple(x)"
            )
        check_input(x)
        check_batch_dimension(model, x)
        return (x,)
    if not x:
        raise ValueError(
            "x is an empty tuple; give the input tensor, or a tuple of them, one per model input"
        )
    for i, item in enumerate(x):
        check_input(item, f"x[{i}]")
    if len(x) == 1:
        check_batch_dimension(model, x[0], "x[0]")
    sizes = {len(item) for item in x}
    if len(sizes) > 1:
        listed = ", ".join(f"x[{i}] has {len(item)}" for i, item in enumerate(x))
        raise ValueError(
            f"the inputs in x have different batch sizes ({listed}); every input needs one row per example"
        )
    return x


def check_batch(output: Tensor, x: Tensor, name: str = "x") -> None:
    """The output must have one row per example of ``x`` (called ``name``)."""
    if isinstance(output, Tensor) and output.dim() >= 1 and output.shape[0] != x.shape[0]:
        raise ValueError(
            f"the model's output has batch size {output.shape[0]} but {name} has {x.shape[0]} examples; "
            f"does {name} (shape {tuple(x.shape)}) have its leading batch dimension?"
        )


def check_forward_args(model: nn.Module, inputs: int, extra: object) -> tuple:
    """``additional_forward_args`` as a tuple (another value is one argument, as in Captum),
    checked against the signature of ``model.forward`` with ``inputs`` inputs before it."""
    extras = () if extra is None else extra if isinstance(extra, tuple) else (extra,)
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # no signature to check: the call will tell
        return extras
    try:
        signature.bind(*range(inputs), *extras)
    except TypeError as error:
        given = f"{inputs} input{'s' if inputs > 1 else ''} (x)"
        if extras:
            raise TypeError(
                f"the model's forward{signature} cannot take {given} and {len(extras)} "
                f"additional_forward_args ({error})"
            ) from None
        raise TypeError(
            f"the model's forward{signature} cannot take {given} ({error}); for several inputs pass "
            "x=(a, b), for other arguments additional_forward_args=(...)"
        ) from None
    return extras


def _is_integer(value: Tensor | np.ndarray) -> bool:
    if isinstance(value, Tensor):
        return not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
    return bool(np.issubdtype(value.dtype, np.integer))


def _tuple_hint(length: int, output: Tensor) -> str:
    """How to index one unit, when a list of ``length`` ints may have meant it."""
    if output.dim() > 2 and length == output.dim() - 1:
        return f"; to index one unit of the output (shape {tuple(output.shape)}) pass a tuple, e.g. (c, i, j)"
    return ""


def _class_indices(target: Target, output: Tensor) -> Tensor:
    """One class per example: an int (or 0-d integer tensor) for all, or a list or 1-D tensor."""
    batch, classes = output.shape[0], output.shape[1]
    if isinstance(target, bool):
        raise TypeError("target must be a class index, a list of them, or a seed tensor; got a bool")
    if isinstance(target, (Tensor, np.ndarray)) and target.ndim == 0 and _is_integer(target):
        target = int(target.item())  # a 0-d index, e.g. model(x).argmax() for one image
    if isinstance(target, (int, np.integer)):
        indices = torch.full((batch,), int(target), dtype=torch.long)
    else:
        is_list = not isinstance(target, (Tensor, np.ndarray))
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
        if is_list and len(indices) == batch and _tuple_hint(batch, output):
            raise ValueError(
                f"target {list(target)} is ambiguous for an output of shape {tuple(output.shape)}: a list is "
                f"one class per example (summed over the positions), a tuple {tuple(target)} one unit of "
                f"the output for every example (Captum's convention); pass the tuple, or for one class per "
                f"example a 1-D tensor, torch.tensor({list(target)})"
            )
        if not is_list and len(indices) == 1:
            indices = indices.expand(batch)  # one class for the whole batch, as Captum reads it
        if len(indices) != batch:
            raise ValueError(
                f"target has {len(indices)} entries but the batch has {batch} examples"
                f"{_tuple_hint(len(indices), output) if is_list else ''}"
            )
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        raise IndexError(
            f"target {indices[bad][0].item()} is out of range for an output with {classes} "
            f"classes (valid: 0..{classes - 1})"
        )
    return indices.long()


def _unit(output: Tensor, index: tuple, name: str) -> tuple[int, ...]:
    """``index`` (a tuple target) checked against ``output``: one entry per dimension after the batch."""
    shape, units = tuple(output.shape), tuple(output.shape[1:])
    if output.dim() == 2 and len(index) != 1:
        raise ValueError(
            f"{name} {index} is a tuple, which indexes one unit of an output with more than two "
            f"dimensions, such as (c, i, j) for (N, C, H, W); this output has shape {shape}: pass an int "
            f"for one class for the whole batch, or a list {list(index)} for one class per example"
        )
    if len(index) != len(units):
        raise ValueError(
            f"{name} {index} has {len(index)} entries, but the model's output has shape {shape}: a tuple "
            f"indexes one unit, with one entry per dimension after the batch ({len(units)} here)"
        )
    unit = tuple(int(i) for i in index)
    for k, (i, size) in enumerate(zip(unit, units)):
        if not 0 <= i < size:
            raise IndexError(
                f"{name} {unit} is out of range: entry {k} is {i}, but dimension {k + 1} of the "
                f"model's output {shape} has size {size} (valid: 0..{size - 1})"
            )
    return unit


def _unit_seed(output: Tensor, target: tuple | Sequence[tuple]) -> Tensor:
    """The seed of a tuple target (one unit for every example) or a list of them (one per example)."""
    seed = torch.zeros_like(output)
    if isinstance(target, tuple):
        unit: tuple = (slice(None), *_unit(output, target, "target"))
        seed[unit] = 1.0
        return seed
    if len(target) != len(output):
        raise ValueError(
            f"target has {len(target)} entries but the batch has {len(output)} examples; a list of tuples "
            "holds one index per example"
        )
    for example, index in enumerate(target):
        unit = (example, *_unit(output, index, f"target[{example}]"))
        seed[unit] = 1.0
    return seed


def seed_from_target(output: Tensor, target: Target) -> Tensor:
    """The tensor to backpropagate from ``output`` for ``target`` (Captum's conventions).

    ``target`` is an int or a 0-d integer tensor (same class for the whole batch), a list
    or 1-D tensor (one class per example), a tuple ``(c, i, j)`` indexing one unit of an
    output with more than two dimensions (the same for every example), a list of such tuples
    (one per example), or a floating-point tensor shaped like ``output``, used as it is.
    For outputs with more than two dimensions a class seed covers every position.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"the model must return a tensor, it returned {type(output).__name__}")
    if output.dim() < 2:
        raise ValueError(
            f"the model's output has shape {tuple(output.shape)}; expected (batch, classes, ...)"
        )
    if isinstance(target, Tensor) and target.shape == output.shape and target.is_floating_point():
        return target.to(dtype=output.dtype, device=output.device)
    if isinstance(target, tuple) or (isinstance(target, list) and target and isinstance(target[0], tuple)):
        return _unit_seed(output, target)
    indices = _class_indices(target, output).to(output.device)
    index = indices.view(-1, *([1] * (output.dim() - 1))).expand(-1, 1, *output.shape[2:])
    return torch.zeros_like(output).scatter_(1, index, 1.0)


def find_layer(model: nn.Module, layer: str | nn.Module, name: str = "layer") -> tuple[str, nn.Module]:
    """Resolve ``layer`` (a module path like ``"features.10"`` or a module) in ``model``.

    ``name`` is how messages call the argument (``"layers[2]"`` for an item of a list).
    """
    if isinstance(layer, nn.Module):
        for path, module in model.named_modules():
            if module is layer:
                return path, module
        raise ValueError(f"{name} {type(layer).__name__} is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(
            f"{name} must be a module path such as 'features.3' or a module of the model, "
            f"got {describe(layer)}"
        )
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [path for path in modules if path]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        prefix = "unknown layer" if name == "layer" else f"{name}: unknown layer"
        raise ValueError(f"{prefix} {layer!r}; the model's layers are: {shown}")
    return layer, modules[layer]


def bias_of(layer: nn.Conv2d | nn.Linear) -> Tensor:
    """``layer.bias``; refuses a layer built with ``bias=False`` (whose ``.bias`` is None)."""
    if layer.bias is None:
        raise ValueError(f"this {type(layer).__name__} has no bias (it was built with bias=False)")
    return layer.bias


# --------------------------------------------------------------------------------------------
# arguments: each error names the parameter and says what to pass
# --------------------------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1


def describe(value: object) -> str:
    """How a message shows a wrong value: ``None``, ``the string 'ring'``, ``float 1.5``, a tensor's shape."""
    if value is None:
        return "None"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _range_text(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"between {minimum:g} and {maximum:g}"
    if minimum is not None:
        return f"at least {minimum:g}"
    return f"at most {maximum:g}"


def as_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int: a Python or NumPy integer, or a 0-d integer tensor (not a bool).

    Raises TypeError for anything else and ValueError outside ``[minimum, maximum]``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got a bool ({value})")
    if (
        isinstance(value, Tensor)
        and value.dim() == 0
        and not value.is_floating_point()
        and not value.is_complex()
        and value.dtype != torch.bool
    ):
        number = int(value.item())
    elif isinstance(value, (int, np.integer)):
        number = int(value)
    else:
        hint = f" (did you mean {int(value)}?)" if isinstance(value, float) and value.is_integer() else ""
        raise TypeError(f"{name} must be an integer, got {describe(value)}{hint}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be an integer {_range_text(minimum, maximum)}, got {number}")
    return number


def as_real(
    name: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """``value`` as a finite float (an int or float, not a bool) in ``[minimum, maximum]`` and ``> above``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number, got a bool ({value})")
    if (
        isinstance(value, Tensor)
        and value.dim() == 0
        and not value.is_complex()
        and value.dtype != torch.bool
    ):
        number = float(value.item())
    elif isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
    else:
        raise TypeError(f"{name} must be a number, got {describe(value)}")
    if not np.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    if above is not None and number <= above:
        raise ValueError(f"{name} must be greater than {above:g}, got {number:g}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {_range_text(minimum, maximum)}, got {number:g}")
    return number


def as_bool(name: str, value: object) -> bool:
    """``value`` as a bool; a string, a number or None is refused (``"False"`` is true in Python)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {describe(value)}")
    return bool(value)


def as_str(name: str, value: object) -> str:
    """``value`` if it is a string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {describe(value)}")
    return value


def as_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}, got {describe(value)}")
    return value


def as_array(
    name: str,
    value: object,
    layouts: dict[int, str] | None = None,
    kinds: str = "biuf",
) -> Tensor | np.ndarray:
    """Check an array argument: a tensor (returned as it is) or anything NumPy makes an array of.

    Parameters
    ----------
    name : str
        The parameter, as messages call it.
    layouts : dict of int to str, optional
        Allowed numbers of dimensions and how to describe each, e.g.
        ``{3: "(C, H, W)", 4: "(N, C, H, W)"}``.
    kinds : str
        Allowed NumPy dtype kinds (``"b"`` bool, ``"i"``/``"u"`` integers, ``"f"`` floats).

    Raises
    ------
    TypeError
        For None, a string, an object that is not an array of numbers, or a dtype outside ``kinds``.
    ValueError
        For a ragged nested list, a wrong number of dimensions, or an empty array.
    """
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{name} must be an array or a tensor, got {describe(value)}")
    if isinstance(value, Tensor):
        array: Tensor | np.ndarray = value
        kind = (
            "c"
            if value.is_complex()
            else "b"
            if value.dtype == torch.bool
            else "f"
            if value.is_floating_point()
            else "u"
            if value.dtype == torch.uint8
            else "i"
        )
        shape = tuple(value.shape)
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} is not a rectangular array of numbers ({error})") from None
        kind, shape = array.dtype.kind, array.shape
    if kind not in kinds:
        wanted = {"b": "bools", "i": "integers", "u": "integers", "f": "floats"}
        allowed = " or ".join(dict.fromkeys(wanted[k] for k in kinds if k in wanted))
        dtype = array.dtype
        raise TypeError(
            f"{name} must hold {allowed}, got {describe(value) if kind == 'O' else f'dtype {dtype}'}"
        )
    if layouts is not None and len(shape) not in layouts:
        expected = " or ".join(layouts.values())
        raise ValueError(f"{name} has shape {shape}; expected {expected}")
    if int(np.prod(shape)) == 0:
        raise ValueError(f"{name} has shape {shape}, with no values")
    return array


def check_images(images: object, name: str = "images") -> Tensor:
    """A floating-point ``(N, C, H, W)`` batch with at least one image."""
    check_input(images, name)  # type: ignore[arg-type]
    assert isinstance(images, Tensor)
    if images.dim() == 3:
        raise ValueError(
            f"{name} has shape {tuple(images.shape)}: one image without its batch dimension; "
            f"add it: {name}[None] (or {name}.unsqueeze(0))"
        )
    if images.dim() != 4:
        raise ValueError(f"{name} has shape {tuple(images.shape)}; expected a batch (N, C, H, W)")
    if images.shape[0] == 0:
        raise ValueError(f"{name} has shape {tuple(images.shape)}: the batch is empty")
    if images.numel() == 0:
        raise ValueError(f"{name} has shape {tuple(images.shape)}: the images have no pixels")
    return images


def _is_index(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, Tensor):
        return (
            value.dim() == 0
            and not value.is_floating_point()
            and not value.is_complex()
            and value.dtype != torch.bool
        )
    return isinstance(value, (int, np.integer))


def _string_target(name: str, text: str) -> TypeError:
    return TypeError(
        f"{name} is the string {text!r}, but targets are class indices: give its index, e.g. "
        f"{name}=data.classes.index({text!r}) for a deconvlab.data.shapes(...) dataset, or "
        f"model.classes.index({text!r}) for the teaching model"
    )


def check_target(target: object) -> None:
    """Refuse a ``target`` that is no class index, list of them, tuple index or seed tensor, before
    the forward pass.

    What needs the model's output (the number of classes, examples and dimensions, a seed's
    shape) is checked afterwards, by :func:`seed_from_target`.

    Raises
    ------
    TypeError
        None, a string, a float, a bool, a list holding anything but integers or tuples of them (or
        mixing both), a tuple holding anything but integers, another object.
    ValueError
        An empty list or tuple; a seed tensor with NaN or infinite values.
    IndexError
        An integer too large for any model (beyond 64 bits).
    """
    if target is None:
        raise TypeError(
            "target is None: give the class to explain, an int such as 3 (or one per example, [3, 0, ...]) "
            "or a seed tensor shaped like the model's output; for the predicted class pass "
            "target=model(x).argmax(1); for several targets pass targets=[...]"
        )
    if isinstance(target, str):
        raise _string_target("target", target)
    if isinstance(target, (bytes, bytearray)):
        raise TypeError(f"target must be a class index or a list of them, got {describe(target)}")
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(
            f"target must be a class index, a list of them, or a seed tensor; got a bool ({target})"
        )
    if isinstance(target, (float, np.floating)):
        hint = f"; did you mean {int(target)}?" if np.isfinite(target) and float(target).is_integer() else ""
        raise TypeError(f"target must be a class index (an integer), got the float {target!r}{hint}")
    if isinstance(target, (int, np.integer)):
        if not -_INT64_MAX <= int(target) <= _INT64_MAX:
            raise IndexError(
                f"target {target} is out of range: class indices run from 0 to the number of classes - 1"
            )
        return
    if isinstance(target, (Tensor, np.ndarray)):
        if isinstance(target, Tensor):
            if target.dtype == torch.bool or target.is_complex():
                raise TypeError(
                    f"target has dtype {target.dtype}; give class indices (integers) or a floating-point "
                    "seed tensor shaped like the model's output"
                )
            if target.is_floating_point() and target.numel() and not bool(torch.isfinite(target).all()):
                raise ValueError(
                    "target is a seed tensor with NaN or infinite values; the map would be meaningless"
                )
        elif target.dtype.kind not in "iuf":
            raise TypeError(
                f"target is {describe(target)}; give class indices (integers), e.g. np.array([3, 1])"
            )
        elif target.dtype.kind == "u" and target.size and int(target.max()) > _INT64_MAX:
            raise IndexError(f"target {int(target.max())} is out of range for any model")
        return
    if isinstance(target, tuple):
        _check_unit_index(target, "target")
        return
    if not isinstance(target, Sequence):
        raise TypeError(
            f"target must be a class index (int), a list of them (one per example), a tuple index "
            f"(c, i, j) or a seed tensor, got {describe(target)}"
        )
    if len(target) == 0:
        raise ValueError("target is an empty list; give one class index per example, or one int for all")
    units = [isinstance(item, tuple) for item in target]
    for i, item in enumerate(target):
        if units[i]:
            _check_unit_index(item, f"target[{i}]")
            continue
        if isinstance(item, str):
            raise _string_target(f"target[{i}]", item)
        if not _is_index(item):
            raise TypeError(
                f"target[{i}] is {describe(item)}, not a class index; a list target holds one int per "
                "example (or one tuple index (c, i, j) per example)"
            )
        if not -_INT64_MAX <= int(item) <= _INT64_MAX:
            raise IndexError(f"target[{i}] = {item} is out of range for any model")
    if any(units) and not all(units):
        raise TypeError(
            f"target mixes ints and tuples ({describe(target)}); give one class per example, [3, 1], "
            "or one tuple index per example, [(c, i, j), ...]"
        )


def _check_unit_index(index: tuple, name: str) -> None:
    """A tuple target: a non-empty tuple of integers (fitted to the output later)."""
    if not index:
        raise ValueError(f"{name} is an empty tuple; a tuple indexes one unit of the output, e.g. (c, i, j)")
    for k, item in enumerate(index):
        if isinstance(item, str):
            raise _string_target(f"{name}[{k}]", item)
        if not _is_index(item):
            raise TypeError(
                f"{name}[{k}] is {describe(item)}, not an integer; a tuple indexes one unit of the "
                "output, e.g. (c, i, j)"
            )
        if not -_INT64_MAX <= int(item) <= _INT64_MAX:
            raise IndexError(f"{name}[{k}] = {item} is out of range for any model")


_TOP_K = re.compile(r"top([0-9]+)")


def check_targets(target: object, targets: object) -> list | int | None:
    """``targets=`` before the forward pass: None (one ``target``), its list, or K for ``"topK"``.

    Raises
    ------
    TypeError
        Both ``target`` and ``targets``, or a ``targets`` that is no list of targets nor "topK";
        an item as :func:`check_target` (the message starts ``targets[k]:``).
    ValueError
        An empty list; another string; "top0".
    """
    if targets is None:
        check_target(target)
        return None
    if target is not None:
        raise TypeError("give either target= (one map per example) or targets= (a map per target), not both")
    if isinstance(targets, str):
        match = _TOP_K.fullmatch(targets)
        if match is None or int(match.group(1)) == 0:
            raise ValueError(
                f"targets must be a list of targets or 'topK' such as 'top5' (the K highest-scoring "
                f"classes), got {targets!r}"
            )
        return int(match.group(1))
    if isinstance(targets, (Tensor, np.ndarray)) and targets.ndim in (1, 2):
        items = list(targets)  # one class, or one class per example, per row
    elif isinstance(targets, (list, tuple, range)):
        items = list(targets)
    else:
        raise TypeError(
            f"targets must be a list of targets (each as target= takes it) or 'topK' such as 'top5', "
            f"got {describe(targets)}"
        )
    if not items:
        raise ValueError("targets is empty; give at least one target, e.g. targets=[0, 1, 2]")
    for k, item in enumerate(items):
        try:
            check_target(item)
        except (TypeError, ValueError, IndexError) as error:
            raise type(error)(f"targets[{k}]: {error}") from None
    return items


def top_classes(output: Tensor, k: int) -> list[Tensor]:
    """The ``k`` highest-scoring classes of each example of an ``(N, C)`` output, best first:
    ``k`` tensors of shape ``(N,)``."""
    if output.dim() != 2:
        raise ValueError(
            f"targets='top{k}' ranks the classes of an (N, C) output, but the model's output has shape "
            f"{tuple(output.shape)}; pass the targets as a list instead"
        )
    if k > output.shape[1]:
        raise ValueError(f"targets='top{k}' asks for {k} classes, but the model has {output.shape[1]}")
    return list(output.detach().topk(k, dim=1).indices.T)


def seeds_from_targets(output: Tensor, targets: list | int) -> tuple[Tensor, list]:
    """The seeds of several targets, stacked ``(T, *output.shape)``, and the targets
    (``"topK"``, given as ``k``, resolved by :func:`top_classes`)."""
    items = top_classes(output, targets) if isinstance(targets, int) else targets
    seeds = []
    for k, item in enumerate(items):
        try:
            seeds.append(seed_from_target(output, item))
        except (TypeError, ValueError, IndexError) as error:
            raise type(error)(f"targets[{k}]: {error}") from None
    return torch.stack(seeds), items


def check_position(position: object) -> str | tuple[int, ...] | None:
    """``position`` of :func:`deconvlab.project`: None, ``"max"`` or a tuple of ints (fitted later)."""
    if position is None:
        return None
    if isinstance(position, str):
        if position != "max":
            raise ValueError(f"position must be None, 'max' or (i, j), got {position!r}")
        return position
    if isinstance(position, (Tensor, np.ndarray)) and position.ndim == 1:
        position = position.tolist()
    if not isinstance(position, (tuple, list)):
        raise TypeError(f"position must be None, 'max' or a pair of ints (i, j), got {describe(position)}")
    items = list(position)
    for item in items:
        if not _is_index(item):
            raise TypeError(f"position must be a pair of ints (i, j), got {describe(position)}")
    return tuple(int(item) for item in items)


def check_rule_list(rules: object, name: str = "rules") -> list:
    """``rules`` as a list: any iterable of rules except a single name or rule (each item resolved later)."""
    from .rules import Rule

    if isinstance(rules, (str, Rule)):
        raise TypeError(f"{name} takes a list of rules, got {rules!r}; for one rule pass {name}=[{rules!r}]")
    if isinstance(rules, (Tensor, np.ndarray, dict, set, bytes)) or not hasattr(rules, "__iter__"):
        raise TypeError(f"{name} must be a list of rule names or Rules, got {describe(rules)}")
    return list(rules)


# -- running the model: a missing batch dimension is said so -------------------------------------

_SHAPE_ERROR = re.compile(
    r"shapes cannot be multiplied|size of tensor|Expected \dD|expected input\[|to have \d+ channels|"
    r"Output size is too small|Kernel size can't be greater|is invalid for input of size|must match the size|"
    r"Given input size|Given groups|non-singleton dimension|Padding size should be|input size|"
    r"Expected.*dimension|expected .*dim",
    re.IGNORECASE,
)
_DTYPE_ERROR = re.compile(
    r"should be the same|must have the same dtype|expected scalar type|expected .*dtype|"
    r"expected both inputs to have same dtype|not implemented for '(Half|BFloat16)'",
    re.IGNORECASE,
)


def _parameter_dtype(model: nn.Module) -> torch.dtype | None:
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return None


def _first_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first convolution or linear layer in registration order: the one that sees ``x`` first."""
    for path, module in model.named_modules():
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, nn.Embedding)):
            return path, module
    return None


def check_batch_dimension(model: nn.Module, x: Tensor, name: str = "x") -> None:
    """Refuse, before the model runs, one example without its batch dimension.

    PyTorch's convolutions accept an unbatched input, ``(C, H, W)`` for ``Conv2d``, so a
    forgotten batch dimension fails far later (a linear layer's "mat1 and mat2 shapes cannot be
    multiplied") or never (a layer's output, one "example" per channel). When the model's first
    layer (in registration order) is a convolution, ``x`` has its unbatched rank and its first
    dimension is that convolution's ``in_channels``, ``x`` is refused with the fix.
    """
    first = _first_layer(model)
    if first is None or not isinstance(first[1], nn.modules.conv._ConvNd):
        return
    path, conv = first
    assert isinstance(conv, nn.modules.conv._ConvNd)
    spatial = len(conv.kernel_size)
    if x.dim() == spatial + 1 and x.shape[0] == conv.in_channels:
        layout = "(N, C, " + ", ".join("DHW"[3 - spatial :]) + ")"
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: one example without its batch dimension, but the model's "
            f"first layer {path!r} ({type(conv).__name__}) takes batches {layout}; add the batch "
            f"dimension: {name}[None] (or {name}.unsqueeze(0))"
        )


class forward_checks:
    """Around a block that runs a model on ``x``: the model's errors caused by ``x`` name it.

    A ``RuntimeError`` of a shape mismatch becomes a ``ValueError``, one of a dtype mismatch a
    ``TypeError``, each naming ``x``'s shape or dtype, with the original error chained. It only
    translates exceptions: it holds no state, installs nothing, and leaves nothing behind when
    interrupted. Run :func:`check_batch_dimension` before the block.
    """

    def __init__(self, model: nn.Module, x: Inputs, name: str = "x") -> None:
        self.model, self.x, self.name = model, x, name

    def __enter__(self) -> forward_checks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        if exc_type is not RuntimeError:  # deconvlab's own, out of memory, interrupts: not about x
            return
        name, x = self.name, self.x
        message = str(error).split("\n")[0]
        if isinstance(x, tuple):
            _refuse_inputs(name, x, message, error)
            return
        if _DTYPE_ERROR.search(message):
            wanted = _parameter_dtype(self.model)
            convertible = wanted is not None and wanted != x.dtype
            fix = f": convert it, e.g. {name}.to({wanted})" if convertible else ""
            raise TypeError(
                f"{name} has dtype {x.dtype}, which the model cannot take ({message}){fix}"
            ) from error
        if _SHAPE_ERROR.search(message):
            hint = f"; if it is one example, add the batch dimension: {name}[None]" if x.dim() == 3 else ""
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}, which the model cannot take: {message}{hint}"
            ) from error


def _refuse_inputs(name: str, x: tuple[Tensor, ...], message: str, error: BaseException | None) -> None:
    """:class:`forward_checks` for several inputs: name their dtypes or shapes."""
    if _DTYPE_ERROR.search(message):
        dtypes = ", ".join(f"{name}[{i}]: {item.dtype}" for i, item in enumerate(x))
        raise TypeError(f"{name} holds dtypes the model cannot take ({dtypes}): {message}") from error
    if _SHAPE_ERROR.search(message):
        shapes = ", ".join(f"{name}[{i}]: {tuple(item.shape)}" for i, item in enumerate(x))
        raise ValueError(f"{name} holds shapes the model cannot take ({shapes}): {message}") from error


@contextmanager
def renaming(argument: str, internal: str = "x") -> Iterator[None]:
    """Errors about ``internal`` raised in the block name the caller's ``argument`` too.

    A widget passes its ``images`` to :func:`deconvlab.attribute` as ``x``; a message starting
    ``"x has shape ..."`` then reads ``"images: x has shape ..."``.
    """
    try:
        yield
    except (TypeError, ValueError, IndexError) as error:
        message = str(error.args[0]) if error.args else ""
        if re.match(rf"{re.escape(internal)}\b", message):
            error.args = (f"{argument}: {message}", *error.args[1:])
        raise
