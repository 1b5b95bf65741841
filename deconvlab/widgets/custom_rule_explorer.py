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

from collections.abc import Sequence
from typing import Callable

import ipywidgets as widgets
import torch
from torch import Tensor, nn

from ..attribution import record
from ..checks import Target, check_input
from ..rules import BUILTIN_NAMES, Rule
from ..viz import as_image, png_bytes, rule_heading, signed_image
from ._base import Explorer, one_thread

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
        Screen pixels per image pixel.
    imagenet : bool
        Undo the ImageNet normalisation to display the input.

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
        check_input(x)
        if x.shape[0] != 1:
            raise ValueError(
                f"CustomRuleExplorer shows one input; got a batch of {x.shape[0]}, index it first"
            )
        self.parameter, self.name, self.equation = parameter, name, equation
        self._family = ParameterisedRule(backward, value)
        self.rule = Rule(name, self._family)
        # One forward pass serves the built-in rules and every value of the user's parameter.
        self._recording = record(model, x, target, rules=[*builtins, self.rule])
        self.builtin_maps = {rule: self._recording.signal(rule) for rule in builtins}
        self.signal = torch.zeros_like(x)
        self._image = widgets.Image(format="png", value=png_bytes(as_image(x[0], imagenet), scale))
        self._picture = widgets.Image(format="png")
        self.readout = widgets.HTML()
        self._scale = scale
        builtin_panels = [
            self._panel(rule_heading(rule),
                        widgets.Image(format="png", value=png_bytes(signed_image(signal[0]), scale)))
            for rule, signal in self.builtin_maps.items()
        ]
        panels = [self._panel("<b>input</b>", self._image), *builtin_panels,
                  self._panel(f"<b>{name}</b> {equation}", self._picture)]
        low, high, step = bounds
        slider = widgets.FloatSlider(value=value, min=low, max=high, step=step, description=parameter,
                                     readout_format=".2f")
        self._connect({parameter: slider}, widgets.VBox([widgets.HBox(panels), self.readout]))

    @staticmethod
    def _panel(title: str, image: widgets.Image) -> widgets.VBox:
        return widgets.VBox([widgets.HTML(title), image])

    def compute(self, value: float) -> Tensor:
        """The user rule's signal for parameter ``value`` (one backward pass, no forward pass)."""
        self._family.value = value
        with one_thread():
            return self._recording.signal(self.name)

    def redraw(self, changed: widgets.Widget | None) -> None:
        value = float(self.controls[self.parameter].value)
        self.signal = self.compute(value)
        self._picture.value = png_bytes(signed_image(self.signal[0]), self._scale)
        nonzero = int((self.signal != 0).sum())
        rows = "".join(
            f"<tr><td>{rule}</td><td style='text-align:right'>{diff:.3g}</td>"
            f"<td>{'identical' if diff == 0 else ''}</td></tr>"
            for rule, diff in self.difference_from_builtins().items()
        )
        self.readout.value = (
            f"<p>{self.name} with {self.parameter} = {value:.2f}: {nonzero} of {self.signal.numel()} "
            f"entries nonzero, largest |signal| {float(self.signal.abs().max()):.3g}</p>"
            f"<table><tr><th>built-in rule</th><th>max |difference|</th><th></th></tr>{rows}</table>"
        )

    def difference_from_builtins(self) -> dict[str, float]:
        """``max |signal − built-in signal|`` for each built-in rule, at the current value."""
        return {rule: float((self.signal - m).abs().max()) for rule, m in self.builtin_maps.items()}
