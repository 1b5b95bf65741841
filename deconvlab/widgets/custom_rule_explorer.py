r"""Your own backward rule, with a slider for its parameter, next to the three built-in ones.

A rule is any elementwise :math:`\operatorname{ReLU}^*(x, p)` (``x`` the ReLU's forward
input, ``p`` the signal from above); the built-in ones are gradient ``p·[x>0]``,
DeConvNet ``p·[p>0]`` and guided backprop ``p·[x>0]·[p>0]``. Give
:class:`CustomRuleExplorer` a family ``backward(x, p, t)`` -- for instance a
thresholded guided backprop ``p·[x>t]·[p>0]`` -- and a slider moves ``t``.

The forward pass runs once. A rule is bound to each ReLU when the forward pass
runs, but the rule's function is called only during the backward pass, so a
slider move only changes ``t`` and repeats the backward pass through the
recorded graph (on one thread, like every explorer's redraw: see ``_base``).
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Sequence
from typing import Callable

import ipywidgets as widgets
import torch
from torch import Tensor, nn

from ..attribution import record
from ..checks import Target, as_bool, as_real, as_str, check_images, check_model, check_target
from ..rules import BUILTIN_NAMES, Rule
from ..viz import Panel, fit_width, map_panels
from ._base import Explorer, check_scale, one_thread, rule_names_of

__all__ = ["CustomRuleExplorer", "ParameterisedRule"]


class ParameterisedRule:
    """``backward(x, p, value)`` with ``value`` held here, usable as a rule's ``backward(x, p)``.

    Parameters
    ----------
    backward : callable
        ``backward(x, p, value) -> Tensor``, elementwise, shaped like ``p``.
    value : float
        The current parameter.
    """

    def __init__(self, backward: Callable[[Tensor, Tensor, float], Tensor], value: float) -> None:
        self.backward = backward
        self.value = value

    def __call__(self, x: Tensor, p: Tensor) -> Tensor:
        return self.backward(x, p, self.value)


class CustomRuleExplorer(Explorer):
    """A slider for a user rule's parameter; its map next to the three built-in maps.

    Parameters
    ----------
    model : nn.Module
        The network (run in eval mode, left in its own mode).
    x : Tensor
        One input, ``(1, C, H, W)``, in [0, 1] (or ImageNet-normalised with ``imagenet=True``).
    target : int or Tensor
        As in :func:`deconvlab.attribute`.
    backward : callable
        The rule family ``backward(x, p, t) -> Tensor``.
    parameter : str
        The parameter's name, shown on the slider.
    bounds : (float, float, float)
        Slider ``(min, max, step)``.
    value : float
        Starting value.
    name : str
        The rule's name in titles.
    equation : str
        The rule written out, shown above its picture.
    builtins : sequence of str
        Built-in rules to compare with.
    scale : int
        Screen pixels per image pixel (at most: the picture stays within ``viz.MAX_WIDTH``).
    imagenet : bool
        Undo the ImageNet normalisation to display the input.

    Raises
    ------
    TypeError, ValueError, IndexError
        A bad argument, named: as :func:`deconvlab.attribute` for ``model``, ``x`` (one input
        ``(1, C, H, W)``) and ``target``; ``backward`` is not callable as ``backward(x, p, t)``;
        ``parameter``, ``name`` or ``equation`` is no string (or ``name`` is that of a rule in
        ``builtins``); ``bounds`` is no ``(min, max, step)`` with ``min < max`` and ``step > 0``;
        ``value`` lies outside them; ``builtins`` is no list of known rules; ``scale`` is no
        integer from 1 to 16; ``imagenet`` is no bool.

    Attributes
    ----------
    rule : Rule
        The rule object (not registered under its name); its backward reads the slider.
    builtin_maps : dict of str to Tensor
        Signals of the built-in rules, computed once.
    signal : Tensor
        The user rule's signal at the slider's current value.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        target: Target,
        backward: Callable[[Tensor, Tensor, float], Tensor],
        parameter: str = "t",
        bounds: tuple[float, float, float] = (-1.0, 3.0, 0.05),
        value: float = 0.0,
        name: str = "custom",
        equation: str = "",
        builtins: Sequence[str] = BUILTIN_NAMES,
        scale: int = 3,
        imagenet: bool = False,
    ) -> None:
        check_model(model)
        check_images(x, "x")
        if x.shape[0] != 1:
            raise ValueError(
                f"x holds a batch of {x.shape[0]}, but CustomRuleExplorer shows one input; pass x[i:i + 1]"
            )
        check_target(target)
        if not callable(backward):
            raise TypeError(f"backward must be callable as backward(x, p, t), got {type(backward).__name__}")
        try:
            inspect.signature(backward).bind(None, None, None)
        except TypeError:
            raise TypeError(
                "backward must take three arguments, backward(x, p, t); its signature is "
                f"{inspect.signature(backward)}"
            ) from None
        except ValueError:  # no signature to read: it will tell when called
            pass
        parameter, name = as_str("parameter", parameter), as_str("name", name)
        equation = as_str("equation", equation)
        if not parameter or not name:
            raise ValueError("parameter and name must not be empty strings")
        builtins = rule_names_of(builtins, "builtins")
        if name in builtins:
            raise ValueError(f"name {name!r} is a built-in rule shown next to yours; choose another name")
        if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence) or len(bounds) != 3:
            raise TypeError(f"bounds must be (min, max, step), got {bounds!r:.60}")
        low, high = as_real("bounds[0]", bounds[0]), as_real("bounds[1]", bounds[1])
        step = as_real("bounds[2]", bounds[2], above=0)
        if not low < high:
            raise ValueError(f"bounds must be (min, max, step) with min < max, got {tuple(bounds)!r:.60}")
        value = as_real("value", value)
        if not low <= value <= high:
            raise ValueError(f"value {value:g} lies outside bounds ({low:g}, {high:g}); give one within them")
        scale, imagenet = check_scale(scale), as_bool("imagenet", imagenet)
        self.parameter, self.name, self.equation = parameter, name, equation
        self._family = ParameterisedRule(backward, value)
        self.rule = Rule(name, self._family)
        # One forward pass serves the built-in rules and every value of the user's parameter.
        self._recording = record(model, x, target, rules=[*builtins, self.rule])
        self.builtin_maps = {rule: self._recording.signal(rule) for rule in builtins}
        self.signal = torch.zeros_like(x)
        self.x, self.imagenet = x, imagenet
        self.readout = widgets.HTML()
        self.panel_size = fit_width(2 + len(builtins), x.shape[-1], scale)
        view = widgets.Image(format="png")
        slider = widgets.FloatSlider(
            value=value, min=low, max=high, step=step, description=parameter, readout_format=".2f"
        )
        layout = widgets.VBox([slider, view, self.readout])
        try:  # the first draw is the first call of the user's function
            self._connect({parameter: slider}, view, layout)
        except TypeError as error:
            raise TypeError(f"backward failed when called as backward(x, p, {parameter}): {error}") from error
        except RuntimeError as error:
            raise ValueError(
                f"backward gave no valid signal for backward(x, p, {parameter}): {error}"
            ) from error

    def panels(self) -> list[Panel]:
        """The row shown: the input, the built-in rules' maps, the user rule's map at the current value."""
        maps = {**{rule: m[0] for rule, m in self.builtin_maps.items()}, self.name: self.signal[0]}
        title = f"{self.name}\n{self.equation}" if self.equation else self.name
        return map_panels(self.x[0], maps, imagenet=self.imagenet, equations=True, titles={self.name: title})

    def compute(self, value: float) -> Tensor:
        """The user rule's signal for parameter ``value`` (one backward pass, no forward pass)."""
        self._family.value = value
        with one_thread():
            return self._recording.signal(self.name)

    def redraw(self, changed: widgets.Widget | None) -> None:
        value = float(self.controls[self.parameter].value)
        self.signal = self.compute(value)
        self._draw("maps", [self.panels()])
        nonzero = int((self.signal != 0).sum())
        rows = "".join(
            f"<tr><td>{rule}</td><td style='text-align:right'>{diff:.3g}</td>"
            f"<td>{'identical' if diff == 0 else ''}</td></tr>"
            for rule, diff in self.difference_from_builtins().items()
        )
        self.readout.value = (
            f"<p>{html.escape(self.summary())}: {nonzero} of {self.signal.numel()} "
            f"entries nonzero, largest |signal| {float(self.signal.abs().max()):.3g}</p>"
            f"<table><tr><th>built-in rule</th><th>max |difference|</th><th></th></tr>{rows}</table>"
        )

    def summary(self) -> str:
        return f"{self.name} with {self.parameter} = {float(self.controls[self.parameter].value):.2f}"

    def difference_from_builtins(self) -> dict[str, float]:
        """``max |signal − built-in signal|`` for each built-in rule, at the current value."""
        return {rule: float((self.signal - m).abs().max()) for rule, m in self.builtin_maps.items()}
