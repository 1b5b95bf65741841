r"""Explorer for notebook 02: the three rules side by side on a real CNN.

For one image, one target class and one layer, :func:`deconvlab.attribute` runs the model forward
once and backward three times, switching only the backward of ReLU in between:

===================  ===============================
gradient             ``p · [x > 0]``
deconvnet            ``p · [p > 0]``
guided_backprop      ``p · [x > 0] · [p > 0]``
===================  ===============================

:class:`CNNExplorer` shows the input (with its ground-truth mask outlined when there is one, on the
input only), the three signals, and the selected rule's heat map over the greyed input
(:func:`deconvlab.viz.map_panels`): panels of one size, each map clipped at the 99th percentile of
its ``|signal|`` with a colour key saying so. The three signals are cached per
``(image, target, layer)``, so moving the rule control only re-renders. At an intermediate layer the
signal has one map per channel; it is shown as the channel-max heat map ``max_c |signal|``
(Simonyan et al., ICLR-W 2014, §3.1), enlarged to the image.

The caption gives each map's energy on the object, :func:`deconvlab.metrics.mask_energy_fraction`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import attribute
from ..checks import as_array, as_bool, check_images, check_model, find_layer, forward_checks
from ..metrics import mask_energy_fraction
from ..model_state import evaluating
from ..rules import BUILTIN_NAMES, BUILTIN_RULES
from ..viz import Panel, fit_width, map_panels, rule_label
from ._base import Explorer, check_scale

__all__ = ["CNNExplorer", "relu_layers"]


def relu_layers(model: nn.Module) -> list[str]:
    """Module paths of the ``nn.ReLU`` modules of ``model.features`` (VGG-style models), else ``[]``."""
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        return []
    return [f"features.{name}" for name, m in features.named_modules() if isinstance(m, nn.ReLU)]


def _classes_of(name: str, value: object, count: int | None, classes: int) -> Tensor:
    """``value`` as a 1-D tensor of class indices (``count`` of them, if given), each below ``classes``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise TypeError(f"{name} must be a list of class indices, got the int {value}; pass {name}=[{value}]")
    layout = {1: f"({'N' if count is not None else 'K'},): a list of classes"}
    indices = torch.as_tensor(as_array(name, value, layout, kinds="iu"))
    if count is not None and len(indices) != count:
        raise ValueError(f"{name} holds {len(indices)} classes but images holds {count} images")
    bad = (indices < 0) | (indices >= classes)
    if bool(bad.any()):
        raise IndexError(
            f"{name} holds the class {int(indices[bad][0])}, out of range for a model with {classes} classes"
        )
    return indices.long()


class CNNExplorer(Explorer):
    """Image, target class, rule and layer controls; the three rules side by side.

    Parameters
    ----------
    model : nn.Module
        A ReLU CNN, e.g. :func:`deconvlab.models.teaching_model` or a torchvision classifier.
    images : Tensor
        ``(N, 3, H, W)`` inputs exactly as the model takes them.
    labels : Tensor, optional
        ``(N,)`` true classes (shown in the caption).
    masks : Tensor, optional
        ``(N, H, W)`` ground-truth masks, outlined on the input.
    classes : sequence of str, optional
        Class names (default: ``model.classes`` if present, else numbers).
    layers : sequence of str, optional
        Layers whose signal can be shown besides the input's (default: the ReLUs of
        ``model.features`` if it has one).
    targets : sequence of int, optional
        Classes offered by the target control besides "predicted" (default: all; give a short
        list for a 1000-class model).
    imagenet : bool, default False
        The images are ImageNet-normalised (undone for display).
    scale : int, optional
        Pixel enlargement of the picture (default 3 for images up to 96 px, else 1), at most what
        keeps the five panels within ``viz.MAX_WIDTH``.

    Raises
    ------
    TypeError, ValueError, IndexError
        A bad argument, named: ``model`` is no ``nn.Module`` returning ``(N, classes)`` logits;
        ``images`` is no ``(N, C, H, W)`` batch it takes; ``labels`` is no ``(N,)`` list of its
        classes; ``masks`` is no ``(N, H, W)`` array of the images' size; ``classes`` does not name
        every class; ``layers`` holds an unknown layer; ``targets`` holds no valid class;
        ``imagenet`` is no bool; ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    predictions, probabilities : Tensor
        ``(N,)`` the model's top class and its softmax probability, computed once.
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor | None = None,
        masks: Tensor | None = None,
        classes: Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        targets: Sequence[int] | None = None,
        imagenet: bool = False,
        scale: int | None = None,
    ) -> None:
        check_model(model)
        check_images(images)
        self.imagenet = as_bool("imagenet", imagenet)
        self.scale = check_scale(scale) if scale is not None else (3 if images.shape[-1] <= 96 else 1)
        n = images.shape[0]
        if masks is not None:
            checked = as_array("masks", masks, {3: "(N, H, W)"})
            if tuple(checked.shape) != (n, *images.shape[-2:]):
                raise ValueError(
                    f"masks has shape {tuple(checked.shape)}; expected {(n, *images.shape[-2:])}, "
                    "one per image"
                )
            masks = torch.as_tensor(checked)
        self.model, self.images, self.masks = model, images, masks
        self.predictions, self.probabilities = self._predict()
        n_classes = int(self._n_classes)
        self.labels = None if labels is None else _classes_of("labels", labels, n, n_classes)
        names = classes if classes is not None else getattr(model, "classes", None)
        if classes is not None and (isinstance(classes, str) or not isinstance(classes, Sequence)):
            raise TypeError(f"classes must be a list of class names, got {classes!r:.60}")
        if classes is not None and len(classes) != n_classes:
            raise ValueError(f"classes holds {len(classes)} names but the model has {n_classes} classes")
        self.classes = [str(name) for name in names] if names else [str(i) for i in range(n_classes)]
        if layers is None:
            self.layers = relu_layers(model)
        elif isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence):
            raise TypeError(f"layers must be a list of module paths, got {layers!r:.60}")
        else:
            self.layers = [find_layer(model, layer, f"layers[{i}]")[0] for i, layer in enumerate(layers)]
        self._cache: dict[tuple[int, int, str], dict[str, Tensor]] = {}
        self.computed = 0  # attribution passes run (cache misses), for tests and curiosity
        if targets is not None:
            targets = _classes_of("targets", targets, None, n_classes).tolist()
        targets = range(n_classes) if targets is None else targets
        controls = {
            "image": widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
            "target": widgets.Dropdown(
                options=[("predicted", "predicted")] + [(f"{t}: {self.classes[t]}", int(t)) for t in targets],
                value="predicted",
                description="target",
            ),
            "rule": widgets.ToggleButtons(
                options=[(rule.label, rule.name) for rule in BUILTIN_RULES],
                value="guided_backprop",
                description="overlay",
            ),
            "layer": widgets.Dropdown(
                options=["input", *self.layers], value="input", description="signal at"
            ),
        }
        self.caption = widgets.HTML()
        self.panel_size = fit_width(5, images.shape[-1], self.scale)
        image = widgets.Image(format="png")
        layout = widgets.VBox(
            [
                widgets.HBox([controls["image"], controls["target"], controls["layer"]]),
                controls["rule"],
                image,
                self.caption,
            ]
        )
        self._connect(controls, image, layout)

    # -- computation (cached) ------------------------------------------------------------------

    @torch.no_grad()
    def _predict(self) -> tuple[Tensor, Tensor]:
        # each module's own mode comes back (e.g. a frozen BatchNorm); errors caused by the images name them
        with evaluating(self.model), forward_checks(self.model, self.images, "images"):
            outputs = [self.model(chunk) for chunk in self.images.split(32)]
        if not all(isinstance(out, Tensor) and out.dim() == 2 for out in outputs):
            out = outputs[0]
            shown = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"model returns {shown}; CNNExplorer needs a classifier's logits (N, classes)")
        logits = torch.cat(outputs)
        self._n_classes = logits.shape[1]
        probs = logits.softmax(1)
        top = probs.max(1)
        return top.indices, top.values

    def target_class(self) -> int:
        """The class explained now ("predicted" resolved to the model's top class)."""
        target = self.controls["target"].value
        return int(self.predictions[self.controls["image"].value]) if target == "predicted" else int(target)

    def maps(
        self, index: int | None = None, target: int | None = None, layer: str | None = None
    ) -> dict[str, Tensor]:
        """The three signals ``{rule: (C, h, w)}`` for an image, class and layer (cached).

        Defaults are the controls' current values. One forward pass and three backward passes
        (``deconvlab.attribute(..., rules=[...])``) on a miss.
        """
        index = self.controls["image"].value if index is None else int(index)
        target = self.target_class() if target is None else int(target)
        layer = self.controls["layer"].value if layer is None else layer
        key = (index, target, layer)
        if key not in self._cache:
            signals = attribute(
                self.model,
                self.images[index : index + 1],
                target,
                rules=BUILTIN_NAMES,
                layer=None if layer == "input" else layer,
            )
            self._cache[key] = {rule: signal[0] for rule, signal in signals.items()}
            self.computed += 1
        return self._cache[key]

    # -- rendering -----------------------------------------------------------------------------

    def panels(self) -> list[Panel]:
        """The row for the current controls: input, the three rules, the chosen rule over the input."""
        index, layer, chosen = (self.controls[k].value for k in ("image", "layer", "rule"))
        return map_panels(
            self.images[index],
            self.maps(),
            "signed" if layer == "input" else "heatmap",
            mask=None if self.masks is None else self.masks[index],
            imagenet=self.imagenet,
            overlay=chosen,
            highlight=chosen,
            equations=True,
        )

    def _caption(self) -> str:
        index, layer, chosen = (self.controls[k].value for k in ("image", "layer", "rule"))
        target = self.target_class()
        pred = int(self.predictions[index])
        parts = []
        if self.labels is not None:
            parts.append(f"true: <b>{html.escape(self.classes[int(self.labels[index])])}</b>")
        parts.append(
            f"predicted: <b>{html.escape(self.classes[pred])}</b> "
            f"(p = {float(self.probabilities[index]):.2f})"
        )
        parts.append(f"explaining: <b>{html.escape(self.classes[target])}</b>")
        where = "input pixels" if layer == "input" else f"layer {html.escape(layer)} (channel-max |signal|)"
        line2 = (
            f"Panels: input{' with ground-truth outline' if self.masks is not None else ''} · "
            + " · ".join(rule.label for rule in BUILTIN_RULES)
            + f" · {rule_label(chosen)} (framed) over the greyed input. Signal at {where}."
        )
        if self.masks is not None:
            maps = self.maps()
            mask = self.masks[index]
            fractions = ", ".join(
                f"{rule.label} {float(mask_energy_fraction(maps[rule.name], mask)[0]):.2f}"
                for rule in BUILTIN_RULES
            )
            area = float(self.masks[index].float().mean())
            line2 += f"<br>Energy on the object: {fractions} (object area: {area:.2f})."
        return " · ".join(parts) + "<br>" + line2

    def redraw(self, changed: widgets.Widget | None) -> None:
        """Compute the signals if image, target or layer changed (cached), then re-render."""
        template = (self.controls["layer"].value == "input", self.controls["rule"].value)
        self._draw(template, [self.panels()])
        self.caption.value = self._caption()

    def summary(self) -> str:
        index, layer = self.controls["image"].value, self.controls["layer"].value
        where = "at the input" if layer == "input" else f"at {layer}"
        return f"image {index}: explaining {self.classes[self.target_class()]}, signal {where}"
