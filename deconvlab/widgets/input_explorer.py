r"""One model, many inputs: which of the three maps depend on the input?

DeConvNet's backward ReLU, :math:`\operatorname{ReLU}^*(x, p) = p \cdot [p > 0]`, ignores
the input ``x``; convolutions, average pooling and linear layers backpropagate
through fixed weights. So in a network without max-pooling DeConvNet's map is the
same for every input, while the gradient ``p·[x>0]`` and guided backprop
``p·[x>0]·[p>0]`` change with it. Max-pooling's switches are what make DeConvNet
input-dependent (Zeiler and Fergus, ECCV 2014, §2.1; Mahendran and Vedaldi,
ECCV 2016).

:class:`InputExplorer` computes the three maps of every input once (one forward
pass per model, :func:`deconvlab.attribute` with a list of rules) and a slider
picks the input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch
from torch import nn

from ..attribution import attribute
from ..checks import Target, as_bool, check_images, check_model, check_target, renaming
from ..rules import BUILTIN_NAMES
from ..viz import as_image, png_bytes, rule_heading, signed_image
from ._base import Explorer, check_scale, rule_names_of

__all__ = ["InputExplorer"]


class InputExplorer(Explorer):
    """A slider over inputs showing the input and its three signed maps.

    Parameters
    ----------
    model : nn.Module or mapping of str to nn.Module
        The network; several named networks add a selector (e.g. one without
        max-pooling and one with it).
    images : Tensor
        ``(N, 3, H, W)`` inputs in [0, 1] (or ImageNet-normalised with ``imagenet=True``).
    target : int, sequence of int, or Tensor
        As in :func:`deconvlab.attribute`; the same for every model.
    rules : sequence of str
        The rules shown (default: gradient, deconvnet, guided_backprop).
    scale : int
        Screen pixels per image pixel.
    imagenet : bool
        Undo the ImageNet normalisation to display the inputs.

    Raises
    ------
    TypeError, ValueError, IndexError
        A bad argument, named: as :func:`deconvlab.attribute` for ``model``, ``images`` (a batch
        ``(N, C, H, W)``) and ``target``; ``rules`` is no list of known rules; ``scale`` is no
        integer from 1 to 16; ``imagenet`` is no bool.

    Attributes
    ----------
    maps : dict of str to dict of str to Tensor
        ``maps[model_name][rule]``: the ``(N, C, H, W)`` signals.
    images_view : dict of str to ipywidgets.Image
        ``"input"`` and one picture per rule.
    readout : ipywidgets.HTML
        For each rule, how far this input's map is from input 0's.
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, nn.Module],
        images: torch.Tensor,
        target: Target,
        rules: Sequence[str] = BUILTIN_NAMES,
        scale: int = 3,
        imagenet: bool = False,
    ) -> None:
        models = dict(model) if isinstance(model, Mapping) else {"model": model}
        if not models:
            raise ValueError("model is an empty dict; give a model, or a dict of named models")
        for net in models.values():
            check_model(net)
        check_images(images)
        check_target(target)
        self.rules = rule_names_of(rules)
        scale, imagenet = check_scale(scale), as_bool("imagenet", imagenet)
        with renaming("images"):
            self.maps = {
                name: attribute(net, images, target, rules=self.rules) for name, net in models.items()
            }
        n = images.shape[0]
        self._inputs = [png_bytes(as_image(images[i], imagenet), scale) for i in range(n)]
        self._pngs = {
            name: {
                rule: [png_bytes(signed_image(maps[rule][i]), scale) for i in range(n)] for rule in self.rules
            }
            for name, maps in self.maps.items()
        }
        self.images_view = {key: widgets.Image(format="png") for key in ("input", *self.rules)}
        self.readout = widgets.HTML()
        controls: dict[str, widgets.Widget] = {
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="input")
        }
        if len(models) > 1:
            controls["model"] = widgets.Dropdown(options=list(models), description="model")
        panels = [
            widgets.VBox([widgets.HTML(rule_heading(key) if key != "input" else "<b>input</b>"), image])
            for key, image in self.images_view.items()
        ]
        self._connect(controls, widgets.VBox([widgets.HBox(panels), self.readout]))

    @property
    def model_name(self) -> str:
        """The selected model's name."""
        control = self.controls.get("model")
        return control.value if control is not None else "model"

    def difference_from_first(self) -> dict[str, float]:
        """``max |map(input i) − map(input 0)|`` per rule, for the selected model and input."""
        i = self.controls["image"].value
        maps = self.maps[self.model_name]
        return {rule: float((maps[rule][i] - maps[rule][0]).abs().max()) for rule in self.rules}

    def redraw(self, changed: widgets.Widget | None) -> None:
        i = self.controls["image"].value
        pngs = self._pngs[self.model_name]
        self.images_view["input"].value = self._inputs[i]
        for rule in self.rules:
            self.images_view[rule].value = pngs[rule][i]
        rows = "".join(
            f"<tr><td>{rule}</td><td style='text-align:right'>{diff:.3g}</td>"
            f"<td>{'identical' if diff == 0 else 'differs'}</td></tr>"
            for rule, diff in self.difference_from_first().items()
        )
        self.readout.value = (
            f"<p>{self.model_name}, input {i}: max |map − map of input 0| per rule</p><table>{rows}</table>"
        )
