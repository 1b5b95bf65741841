r"""Sliders over the sanity checks: class sensitivity and cascading randomisation.

The maps differ only in the backward of ReLU, ``ReLU*(x, p)``: gradient ``p·[x>0]``,
DeConvNet ``p·[p>0]``, guided backprop ``p·[x>0]·[p>0]``.

* :class:`ClassSensitivityExplorer`: a slider over two-object images; for each rule the
  map for class A above the map for class B, and their Spearman correlations
  (Nie et al., ICML 2018).
* :class:`RandomisationExplorer`: a slider over the depth of the cascading
  randomisation (Adebayo et al., NeurIPS 2018); for each rule the trained model's map
  above the map with the top layers re-initialised, and the similarities.

Both take a result already computed by :mod:`deconvlab.sanity` (so the notebook's
numbers and the pictures come from the same maps) and encode every picture once,
at construction; a slider move only swaps cached PNGs and one HTML readout.
A toggle shows the maps the two ways Adebayo et al. compare them: ``|map|`` summed
over channels and scaled to its 99th percentile (:func:`deconvlab.metrics.abs_normalise`,
white = large), or the signed map summed over channels
(:func:`deconvlab.metrics.diverging_normalise`: grey = 0, white > 0, black < 0).
Rules are titled by their label and equation, read from the rule (:func:`deconvlab.viz.rule_heading`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import ipywidgets as widgets
import numpy as np

from ..metrics import abs_normalise, diverging_normalise
from ..viz import as_image, outline_mask, png_bytes, rule_heading, rule_label
from ._base import Explorer, check_scale

if TYPE_CHECKING:
    import torch

    from ..sanity import CascadeResult, ClassSensitivityResult

__all__ = ["DISPLAYS", "ClassSensitivityExplorer", "RandomisationExplorer", "display_arrays"]

#: The two ways of showing a map, as offered by the toggle.
DISPLAYS = ("|map|", "signed")

_GAP = 2  # pixels of white between the two stacked pictures of a column
_COLOURS = ((0.0, 1.0, 0.0), (1.0, 0.0, 1.0))  # outline of object A (green) and B (magenta)


def display_arrays(maps: torch.Tensor, display: str) -> np.ndarray:
    """``(N, C, H, W)`` signed maps as ``(N, H, W)`` grey pictures in [0, 1].

    ``"|map|"``: :func:`~deconvlab.metrics.abs_normalise`; ``"signed"``:
    ``0.5 + 0.5 ·`` :func:`~deconvlab.metrics.diverging_normalise`.
    """
    if display == "|map|":
        return abs_normalise(maps)
    if display == "signed":
        return 0.5 + 0.5 * diverging_normalise(maps)
    raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")


def _class_names(classes: object, needed: int) -> tuple[str, ...]:
    """``classes`` as a tuple of at least ``needed`` names (TypeError or ValueError naming it)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a list of class names, got {classes!r:.60}")
    if len(classes) < needed:
        raise ValueError(f"classes holds {len(classes)} names, but the labels go up to class {needed - 1}")
    return tuple(str(name) for name in classes)


def _stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Two ``(H, W[, 3])`` pictures one above the other, separated by a white band."""
    gap = np.ones((_GAP, *top.shape[1:]), top.dtype)
    return np.concatenate([top, gap, bottom])


def _grey(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1).astype(np.float32)


def _column(title: str, image: widgets.Image) -> widgets.VBox:
    return widgets.VBox([widgets.HTML(title), image])


def _toggle() -> widgets.ToggleButtons:
    return widgets.ToggleButtons(options=list(DISPLAYS), value=DISPLAYS[0], description="show")


_LEGEND = {
    "|map|": "|map| summed over channels, scaled to its 99th percentile: black = 0, white = large",
    "signed": "signed map summed over channels: grey = 0, white = positive, black = negative",
}


class ClassSensitivityExplorer(Explorer):
    """A slider over two-object images: each rule's map for class A above its map for class B.

    Parameters
    ----------
    result : ClassSensitivityResult
        From :func:`deconvlab.sanity.class_sensitivity`.
    classes : sequence of str, optional
        Class names (default: the shapes dataset's).
    scale : int
        Screen pixels per image pixel.

    Raises
    ------
    TypeError, ValueError
        ``result`` is no ClassSensitivityResult; ``classes`` is no list of names covering its
        labels; ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    pictures : dict of str to ipywidgets.Image
        ``"input"`` and one picture per rule (A on top, B below).
    readout : ipywidgets.HTML
        Spearman(A, B) and the share of each map's energy on each object.
    """

    def __init__(self, result: ClassSensitivityResult, classes=None, scale: int = 3) -> None:
        from ..data import CLASSES
        from ..sanity import ClassSensitivityResult

        if not isinstance(result, ClassSensitivityResult):
            raise TypeError(
                f"result must be a ClassSensitivityResult (from deconvlab.sanity.class_sensitivity), "
                f"got {type(result).__name__}"
            )
        scale = check_scale(scale)
        self.result = result
        self.classes = _class_names(classes, int(result.labels.max()) + 1) if classes is not None else CLASSES
        self.rules = list(result.rules)
        n = len(result.images)
        masks = result.masks.numpy()
        self._inputs = []
        for i in range(n):
            img = as_image(result.images[i])
            a, b = (outline_mask(img, masks[i, k], _COLOURS[k]) for k in range(2))
            self._inputs.append(png_bytes(_stack(a, b), scale))
        self._pngs: dict[tuple[str, str], list[bytes]] = {}
        for display in DISPLAYS:
            for rule in self.rules:
                pair = result.maps[rule]
                shown = display_arrays(pair.flatten(0, 1), display).reshape(n, 2, *pair.shape[-2:])
                self._pngs[display, rule] = [
                    png_bytes(_grey(_stack(shown[i, 0], shown[i, 1])), scale) for i in range(n)
                ]
        self.pictures = {"input": widgets.Image(format="png")}
        self.pictures.update({rule: widgets.Image(format="png") for rule in self.rules})
        self.readout = widgets.HTML()
        self.legend = widgets.HTML()
        titles = {"input": "<b>input</b><br>A green (top), B magenta (bottom)"}
        columns = [_column(titles.get(k, rule_heading(k)), img) for k, img in self.pictures.items()]
        controls = {
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="image"),
            "display": _toggle(),
        }
        view = widgets.VBox([widgets.HBox(columns), self.legend, self.readout])
        self._connect(controls, view)

    def readout_html(self, i: int) -> str:
        """The numbers of image ``i``: Spearman(A, B) and where each map's energy lies."""
        r = self.result
        a, b = (self.classes[int(c)] for c in r.labels[i])
        rows = []
        for rule in self.rules:
            e = r.energy[rule][i]
            rows.append(
                f"<tr><td>{html.escape(rule_label(rule))}</td>"
                f"<td style='text-align:right'>{r.spearman[rule][i]:+.2f}</td>"
                f"<td style='text-align:right'>{r.spearman_signed[rule][i]:+.2f}</td>"
                f"<td style='text-align:right'>{e[0, 0]:.2f} / {e[0, 1]:.2f}</td>"
                f"<td style='text-align:right'>{e[1, 0]:.2f} / {e[1, 1]:.2f}</td></tr>"
            )
        return (
            f"<p>image {i}: A = <b>{a}</b>, B = <b>{b}</b></p>"
            "<table><tr><th>rule</th><th>Spearman(A, B) |map|</th><th>Spearman(A, B) signed</th>"
            "<th>map A: energy on A / on B</th><th>map B: energy on A / on B</th></tr>"
            f"{''.join(rows)}</table>"
        )

    def redraw(self, changed: widgets.Widget | None) -> None:
        i, display = int(self.controls["image"].value), self.controls["display"].value
        if changed is None or changed is self.controls["image"]:
            self.pictures["input"].value = self._inputs[i]
            self.readout.value = self.readout_html(i)
        for rule in self.rules:
            self.pictures[rule].value = self._pngs[display, rule][i]
        self.legend.value = f"Top: the map for class A; bottom: the map for class B ({_LEGEND[display]})."


class RandomisationExplorer(Explorer):
    """A slider over the depth of the cascading randomisation, and one over images.

    For each rule the picture shows the trained model's map (top) above the map at
    the chosen stage (bottom), where the layers from the logits down to the named
    one are re-initialised.

    Parameters
    ----------
    result : CascadeResult
        From :func:`deconvlab.sanity.cascading_randomisation`.
    stage_labels : sequence of str, optional
        A display name per stage (default: the result's layer names).
    scale : int
        Screen pixels per image pixel.

    Raises
    ------
    TypeError, ValueError
        ``result`` is no CascadeResult; ``stage_labels`` is no list of one label per stage;
        ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    pictures : dict of str to ipywidgets.Image
        ``"input"`` and one picture per rule.
    readout : ipywidgets.HTML
        This image's similarities at this stage, and their means over the images.
    """

    def __init__(self, result: CascadeResult, stage_labels=None, scale: int = 3) -> None:
        from ..sanity import CascadeResult

        if not isinstance(result, CascadeResult):
            raise TypeError(
                f"result must be a CascadeResult (from deconvlab.sanity.cascading_randomisation), "
                f"got {type(result).__name__}"
            )
        if stage_labels is not None and (
            isinstance(stage_labels, str) or not isinstance(stage_labels, Sequence)
        ):
            raise TypeError(f"stage_labels must be a list of labels, one per stage, got {stage_labels!r:.60}")
        scale = check_scale(scale)
        self.result = result
        self.rules = list(result.rules)
        self.stage_labels = (
            [str(label) for label in stage_labels] if stage_labels is not None else list(result.stages)
        )
        if len(self.stage_labels) != len(result.stages):
            raise ValueError(
                f"stage_labels holds {len(self.stage_labels)} stage labels for {len(result.stages)} stages"
            )
        n_stages, n = len(result.stages), len(result.images)
        self._inputs = [png_bytes(as_image(result.images[i]), scale) for i in range(n)]
        self._pngs: dict[tuple[str, str], list[list[bytes]]] = {}
        for display in DISPLAYS:
            for rule in self.rules:
                m = result.maps[rule]
                shown = display_arrays(m.flatten(0, 1), display).reshape(n_stages, n, *m.shape[-2:])
                self._pngs[display, rule] = [
                    [png_bytes(_grey(_stack(shown[0, i], shown[s, i])), scale) for i in range(n)]
                    for s in range(n_stages)
                ]
        self._means = {metric: result.mean(metric) for metric in ("spearman_abs", "spearman_signed", "ssim")}
        self.pictures = {"input": widgets.Image(format="png")}
        self.pictures.update({rule: widgets.Image(format="png") for rule in self.rules})
        self.readout = widgets.HTML()
        self.legend = widgets.HTML()
        titles = {"input": "<b>input</b>"}
        columns = [_column(titles.get(k, rule_heading(k)), img) for k, img in self.pictures.items()]
        controls = {
            "stage": widgets.IntSlider(value=0, min=0, max=n_stages - 1, description="randomised"),
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="image"),
            "display": _toggle(),
        }
        view = widgets.VBox([widgets.HBox(columns), self.legend, self.readout])
        self._connect(controls, view)

    def readout_html(self, stage: int, i: int) -> str:
        """Similarity to the trained model's map at ``stage``, for image ``i`` and on average."""
        r = self.result
        done = ", ".join(self.stage_labels[1 : stage + 1]) or "nothing"
        rows = "".join(
            f"<tr><td>{html.escape(rule_label(rule))}</td>"
            + "".join(
                f"<td style='text-align:right'>{getattr(r, metric)[rule][stage, i]:+.2f} "
                f"({self._means[metric][rule][stage]:+.2f})</td>"
                for metric in ("spearman_abs", "spearman_signed", "ssim")
            )
            + "</tr>"
            for rule in self.rules
        )
        return (
            f"<p>stage {stage}: <b>{html.escape(self.stage_labels[stage])}</b> "
            f"(re-initialised: {html.escape(done)})</p>"
            "<table><tr><th>rule</th><th>Spearman |map|</th><th>Spearman signed</th><th>SSIM |map|</th></tr>"
            f"{rows}</table><p>This image (in brackets: the mean over the {len(r.images)} images).</p>"
        )

    def redraw(self, changed: widgets.Widget | None) -> None:
        stage, i = int(self.controls["stage"].value), int(self.controls["image"].value)
        display = self.controls["display"].value
        if changed is None or changed is self.controls["image"]:
            self.pictures["input"].value = self._inputs[i]
        for rule in self.rules:
            self.pictures[rule].value = self._pngs[display, rule][stage][i]
        if changed is not self.controls["display"]:
            self.readout.value = self.readout_html(stage, i)
        self.legend.value = (
            "Top: the trained model's map; bottom: the map with the layers re-initialised from the logits "
            f"down to the stage shown ({_LEGEND[display]})."
        )
