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
picks the input; the picture is :func:`deconvlab.viz.map_panels`' row (input, then each
rule's signed map clipped at the 99th percentile of ``|signal|``, with its colour key).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import torch
from torch import nn

from ..attribution import attribute
from ..checks import Target, as_bool, check_images, check_model, check_target, renaming
from ..rules import BUILTIN_NAMES
from ..viz import fit_width, map_panels
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
        Screen pixels per image pixel (at most: the picture stays within ``viz.MAX_WIDTH``).
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
    rows : list of lists of Panel
        The panels shown now: the input, then one map per rule.
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
        self.images, self.imagenet = images, imagenet
        self.panel_size = fit_width(1 + len(self.rules), images.shape[-1], scale)
        self.readout = widgets.HTML()
        controls: dict[str, widgets.Widget] = {
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="input")
        }
        self._add_model_choice(controls, list(models))
        view = widgets.Image(format="png")
        layout = widgets.VBox([widgets.HBox(list(controls.values())), view, self.readout])
        self._connect(controls, view, layout)

    def difference_from_first(self) -> dict[str, float]:
        """``max |map(input i) − map(input 0)|`` per rule, for the selected model and input."""
        i = self.controls["image"].value
        maps = self.maps[self.model_name]
        return {rule: float((maps[rule][i] - maps[rule][0]).abs().max()) for rule in self.rules}

    def panels(self) -> list:
        """The row shown for the selected model and input (:func:`deconvlab.viz.map_panels`)."""
        i = self.controls["image"].value
        maps = {rule: self.maps[self.model_name][rule][i] for rule in self.rules}
        return map_panels(self.images[i], maps, imagenet=self.imagenet, equations=True)

    def redraw(self, changed: widgets.Widget | None) -> None:
        self._draw("maps", [self.panels()])
        rows = "".join(
            f"<tr><td>{rule}</td><td style='text-align:right'>{diff:.3g}</td>"
            f"<td>{'identical' if diff == 0 else 'differs'}</td></tr>"
            for rule, diff in self.difference_from_first().items()
        )
        self.readout.value = (
            f"<p>{html.escape(self.summary())}: max |map − map of input 0| per rule</p><table>{rows}</table>"
        )

    def summary(self) -> str:
        return f"{self.model_name}, input {self.controls['image'].value}"
