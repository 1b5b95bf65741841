r"""Where image recovery comes from: a slider over "the guided rule from ReLU layer ``k`` upward".

Guided backprop's backward ReLU is ``p · [x > 0] · [p > 0]``, the gradient's ``p · [x > 0]``. A rule
map (:func:`deconvlab.sanity.guided_from_layer`) gives the ReLU layers from ``k`` upward the guided
rule and the layers below ``k`` the gradient; its complement guides only the layers below ``k``.
Nie, Zhang and Patel (ICML 2018) explain image recovery by the backward ReLUs of the lower layers
together with the max-pool switches: the slider shows which layers' gates make the map look like
the image.

:class:`RecoveryExplorer` takes results of :func:`deconvlab.sanity.recovery_by_depth` (all ``k``
computed from one forward pass per chunk of images), so the notebook's numbers and the pictures
come from the same maps; a slider move only draws cached maps into the figure.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..viz import fit_width, map_panels
from ._base import Explorer, check_scale

if TYPE_CHECKING:
    from ..sanity.guided_depth import GuidedDepthResult

__all__ = ["RecoveryExplorer"]

#: The two maps' titles (one figure template for every ``k``: a move only pastes new maps).
TITLES = {
    "upper": "guided from ReLU k up\n(the gradient below k)",
    "lower": "guided below ReLU k\n(the gradient from k up)",
}


class RecoveryExplorer(Explorer):
    """A slider over ``k``: the map with the guided rule from ReLU layer ``k`` upward, beside its complement.

    Parameters
    ----------
    results : GuidedDepthResult or mapping of str to GuidedDepthResult
        From :func:`deconvlab.sanity.recovery_by_depth`; several named results (e.g. the trained
        and an untrained network) add a selector.
    scale : int
        Screen pixels per image pixel, at most (the figure stays within ``viz.MAX_WIDTH``).

    Raises
    ------
    TypeError, ValueError
        ``results`` is no GuidedDepthResult (or a non-empty mapping of them, all with the same
        number of ReLU layers); ``scale`` is no integer from 1 to 16.

    Attributes
    ----------
    rows : list of lists of Panel
        The panels shown now: the input, the map guided from ``k`` upward, the map guided below ``k``.
    readout : ipywidgets.HTML
        Each map's correlation with its image, for this image and on average, at every ``k``.
    """

    def __init__(self, results: GuidedDepthResult | Mapping[str, GuidedDepthResult], scale: int = 3) -> None:
        from ..sanity.guided_depth import GuidedDepthResult

        named = dict(results) if isinstance(results, Mapping) else {"model": results}
        if not named:
            raise ValueError("results is an empty dict; give a GuidedDepthResult, or a dict of named ones")
        for name, result in named.items():
            if not isinstance(result, GuidedDepthResult):
                raise TypeError(
                    f"results[{name!r}] must be a GuidedDepthResult (from "
                    f"deconvlab.sanity.recovery_by_depth), got {type(result).__name__}"
                )
        depths = {len(result.layers) for result in named.values()}
        if len(depths) > 1:
            raise ValueError(
                f"the results have different numbers of ReLU layers {sorted(depths)}; give one model's"
            )
        scale = check_scale(scale)
        self.results = named
        first = next(iter(named.values()))
        top = len(first.layers) + 1
        self._means = {name: (r.mean("upper"), r.mean("lower")) for name, r in named.items()}
        self.panel_size = fit_width(3, first.images.shape[-1], scale)
        self.readout = widgets.HTML()
        controls: dict[str, widgets.Widget] = {
            "k": widgets.IntSlider(value=top, min=1, max=top, description="guided from"),
            "image": widgets.IntSlider(value=0, min=0, max=len(first.images) - 1, description="image"),
        }
        self._add_model_choice(controls, list(named))
        view = widgets.Image(format="png")
        layout = widgets.VBox([widgets.HBox(list(controls.values())), view, self.readout])
        self._connect(controls, view, layout)

    @property
    def result(self) -> GuidedDepthResult:
        """The selected result."""
        return self.results[self.model_name]

    def panels(self) -> list:
        """The row shown: the input, the map guided from ``k`` upward, the map guided below ``k``."""
        k, i = int(self.controls["k"].value), int(self.controls["image"].value)
        r = self.result
        maps = {"upper": r.upper[k][i], "lower": r.lower[k][i]}
        return map_panels(r.images[i], maps, titles=TITLES)

    def readout_html(self) -> str:
        """The correlation of each map with its image: this image, and the mean at every ``k``."""
        k, i = int(self.controls["k"].value), int(self.controls["image"].value)
        r = self.result
        upper, lower = self._means[self.model_name]
        right = "<td style='text-align:right'>"
        rows = "".join(
            ("<tr style='font-weight:bold'>" if j == k else "<tr>")
            + f"<td>{j}</td><td>{html.escape(r.layers_text(j, 'upper'))}</td>{right}{upper[j]:+.2f}</td>"
            + f"<td>{html.escape(r.layers_text(j, 'lower'))}</td>{right}{lower[j]:+.2f}</td></tr>"
            for j in r.ks
        )
        head = "".join(
            f"<th>{text}</th>" for text in ("k", "guided from k up", "Pearson", "guided below k", "Pearson")
        )
        return (
            f"<p>{html.escape(self.summary())}: Pearson(map, image) of this image "
            f"{float(r.correlation_upper[k][i]):+.2f} (guided from {k} up) and "
            f"{float(r.correlation_lower[k][i]):+.2f} (guided below {k}).</p>"
            f"<table><caption>mean over the {len(r.images)} images</caption><tr>{head}</tr>{rows}</table>"
        )

    def redraw(self, changed: widgets.Widget | None) -> None:
        self._draw("maps", [self.panels()])
        self.readout.value = self.readout_html()

    def summary(self) -> str:
        k, i = int(self.controls["k"].value), int(self.controls["image"].value)
        return f"{self.model_name}, image {i}, k = {k}"
