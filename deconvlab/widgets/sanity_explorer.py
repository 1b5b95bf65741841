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
numbers and the pictures come from the same maps) and normalise every map once, at
construction; a slider move only pastes cached pictures into the figure
(:func:`deconvlab.sanity.plots.class_sensitivity_panels`, :func:`~deconvlab.sanity.plots.cascade_panels`:
panels of one size, a colour key under each map, the objects outlined on the input only).
A toggle shows the maps the two ways Adebayo et al. compare them: ``|map|`` summed
over channels and scaled to its 99th percentile (:func:`deconvlab.metrics.abs_normalise`,
white = large), or the signed map summed over channels
(:func:`deconvlab.metrics.diverging_normalise`: grey = 0, white > 0, black < 0).
Rules are titled by their label and equation, read from the rule (:func:`deconvlab.viz.rule_title`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..sanity.plots import (
    CASCADE_ROWS,
    CLASS_ROWS,
    DISPLAYS,
    cascade_panels,
    class_sensitivity_panels,
    display_arrays,
)
from ..viz import fit_width, rule_label
from ._base import Explorer, check_scale

if TYPE_CHECKING:
    from ..sanity import CascadeResult, ClassSensitivityResult

__all__ = ["DISPLAYS", "ClassSensitivityExplorer", "RandomisationExplorer", "display_arrays"]


def _class_names(classes: object, needed: int) -> tuple[str, ...]:
    """``classes`` as a tuple of at least ``needed`` names (TypeError or ValueError naming it)."""
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes must be a list of class names, got {classes!r:.60}")
    if len(classes) < needed:
        raise ValueError(f"classes holds {len(classes)} names, but the labels go up to class {needed - 1}")
    return tuple(str(name) for name in classes)


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
        Screen pixels per image pixel, at most (the picture stays within ``viz.MAX_WIDTH``).

    Raises
    ------
    TypeError, ValueError
        ``result`` is no ClassSensitivityResult; ``classes`` is no list of names covering its
        labels; ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    rows : list of lists of Panel
        The panels shown now: the input with object A outlined and the maps for class A, then
        the input with object B outlined and the maps for class B.
    readout : ipywidgets.HTML
        Spearman(A, B) and the share of each map's energy on each object.
    """

    row_labels = CLASS_ROWS

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
        self._shown = {
            display: {
                rule: display_arrays(m.flatten(0, 1), display).reshape(n, 2, *m.shape[-2:])
                for rule, m in result.maps.items()
            }
            for display in DISPLAYS
        }
        self.panel_size = fit_width(1 + len(self.rules), result.images.shape[-1], scale, row_labels=True)
        self.readout = widgets.HTML()
        self.legend = widgets.HTML()
        controls = {
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="image"),
            "display": _toggle(),
        }
        view = widgets.Image(format="png")
        layout = widgets.VBox([widgets.HBox(list(controls.values())), view, self.legend, self.readout])
        self._connect(controls, view, layout)

    def panels(self) -> list[list]:
        """The rows shown now (:func:`deconvlab.sanity.plots.class_sensitivity_panels`)."""
        i, display = int(self.controls["image"].value), self.controls["display"].value
        return class_sensitivity_panels(self.result, i, display, self._shown[display])

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

    def summary(self) -> str:
        i = int(self.controls["image"].value)
        a, b = (self.classes[int(c)] for c in self.result.labels[i])
        return f"image {i}: A = {a} (outlined in green), B = {b} (magenta)"

    def redraw(self, changed: widgets.Widget | None) -> None:
        i, display = int(self.controls["image"].value), self.controls["display"].value
        self._draw(display, self.panels())
        if changed is None or changed is self.controls["image"]:
            self.readout.value = self.readout_html(i)
        self.legend.value = (
            f"Top: the map for class A; bottom: the map for class B; A is outlined in green and B in "
            f"magenta on the input ({_LEGEND[display]})."
        )


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
        Screen pixels per image pixel, at most (the picture stays within ``viz.MAX_WIDTH``).

    Raises
    ------
    TypeError, ValueError
        ``result`` is no CascadeResult; ``stage_labels`` is no list of one label per stage;
        ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    rows : list of lists of Panel
        The panels shown now: the input and the trained model's maps, then the maps at the stage.
    readout : ipywidgets.HTML
        This image's similarities at this stage, and their means over the images.
    """

    row_labels = CASCADE_ROWS

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
        self._shown = {
            display: {
                rule: display_arrays(m.flatten(0, 1), display).reshape(n_stages, n, *m.shape[-2:])
                for rule, m in result.maps.items()
            }
            for display in DISPLAYS
        }
        self._means = {metric: result.mean(metric) for metric in ("spearman_abs", "spearman_signed", "ssim")}
        self.panel_size = fit_width(1 + len(self.rules), result.images.shape[-1], scale, row_labels=True)
        self.readout = widgets.HTML()
        self.legend = widgets.HTML()
        controls = {
            "stage": widgets.IntSlider(value=0, min=0, max=n_stages - 1, description="randomised"),
            "image": widgets.IntSlider(value=0, min=0, max=n - 1, description="image"),
            "display": _toggle(),
        }
        view = widgets.Image(format="png")
        layout = widgets.VBox([widgets.HBox(list(controls.values())), view, self.legend, self.readout])
        self._connect(controls, view, layout)

    def panels(self) -> list[list]:
        """The rows shown now (:func:`deconvlab.sanity.plots.cascade_panels`)."""
        stage, i = int(self.controls["stage"].value), int(self.controls["image"].value)
        display = self.controls["display"].value
        return cascade_panels(self.result, stage, i, display, self._shown[display])

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

    def summary(self) -> str:
        stage, i = int(self.controls["stage"].value), int(self.controls["image"].value)
        done = ", ".join(self.stage_labels[1 : stage + 1]) or "nothing"
        return f"image {i}, stage {stage} ({self.stage_labels[stage]}): re-initialised {done}"

    def redraw(self, changed: widgets.Widget | None) -> None:
        stage, i = int(self.controls["stage"].value), int(self.controls["image"].value)
        self._draw(self.controls["display"].value, self.panels())
        if changed is not self.controls["display"]:
            self.readout.value = self.readout_html(stage, i)
        self.legend.value = (
            "Top: the trained model's map; bottom: the map with the layers re-initialised from the logits "
            f"down to the stage shown ({_LEGEND[self.controls['display'].value]})."
        )
