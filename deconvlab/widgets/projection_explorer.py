r"""Explorer for notebook 03: Zeiler and Fergus' top-9 view, DeConvNet next to guided backprop.

For a layer and a channel (two sliders) it shows the ``k`` images of a set that activate the
channel most, and under each the projection of its strongest unit back to pixels
(:func:`deconvlab.project` with ``position="max"``), once with DeConvNet's backward of ReLU,
``p · [p > 0]``, and once with guided backprop's, ``p · [x > 0] · [p > 0]`` (Zeiler and Fergus,
ECCV 2014, Fig. 2; Springenberg et al., ICLR-W 2015).

It opens where there is something to see: a deep layer (the last but one), its channel with the
strongest activations, zoomed into the strongest units' receptive fields
(:func:`deconvlab.viz.projection_panels`: the images in the first row, each rule's projections
below, every tile one size, each projection clipped at the 99th percentile of its ``|signal|``
inside the field, with a colour key).

Cost of a slider move: the channel maxima of every layer over the whole image set are computed
once, when the explorer is built (:func:`deconvlab.zeiler_fergus.channel_maxima`, one forward
pass). A channel move then ranks ``N`` numbers and projects only ``k`` images, in one batch, with
both rules from one forward pass; the picture of each ``(layer, channel)`` is cached.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Sequence

import ipywidgets as widgets
from torch import Tensor, nn

from ..checks import as_bool, as_int, check_images, check_model, find_layer
from ..viz import Box, Panel, fit_width, projection_panels, rule_label
from ..zeiler_fergus import ReceptiveField, TopActivations, channel_maxima, project_top, receptive_field
from ._base import Explorer, check_scale, rule_names_of
from .cnn_explorer import relu_layers

__all__ = ["ProjectionExplorer"]


def _evict(cache: OrderedDict, size: int) -> None:
    while len(cache) > size:
        cache.popitem(last=False)


class ProjectionExplorer(Explorer):
    """Layer and channel sliders; the top-``k`` images and their projections under two rules.

    Controls: ``layer`` (a slider over ``layers``, its name written beside it), ``channel``, and
    ``zoom`` (show only each strongest unit's receptive field, enlarged, as Zeiler and Fergus'
    figures do).

    Parameters
    ----------
    model : nn.Module
        A ReLU CNN, e.g. :func:`deconvlab.models.teaching_model`.
    images : Tensor
        ``(N, 3, H, W)`` images in [0, 1] to rank (e.g. ``deconvlab.data.shapes(512).images``).
    layers : sequence of str, optional
        Convolutional layers to choose from (default: the ReLUs of ``model.features``).
    k : int, default 9
        Images per channel.
    rules : sequence of str, default ("deconvnet", "guided_backprop")
        One row of projections per rule.
    scale : int, default 2
        Pixel enlargement of each tile, at most (the picture stays within ``viz.MAX_WIDTH``).
    cache_size : int, default 128
        How many ``(layer, channel)`` projections to keep (and twice as many pictures); at least 1.
    layer : str, optional
        The layer shown first (default: the last but one of ``layers``).
    channel : int, optional
        The channel shown first (default: the one whose ``k`` strongest activations are largest).
    zoom : bool, default True
        Start zoomed into the receptive fields.

    Raises
    ------
    TypeError, ValueError
        A bad argument, named: ``model``, ``images`` and ``layers`` as in
        :func:`deconvlab.zeiler_fergus.channel_maxima`; ``k`` is no integer ``>= 1``; ``rules`` is
        no list of known rules; ``scale`` is no integer from 1 to 16; ``cache_size`` is no integer ``>= 1``.

    Attributes
    ----------
    maxima : dict of str to ChannelMaxima
        Every channel's maximum (and where) in every image, per layer.
    """

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        layers: Sequence[str] | None = None,
        k: int = 9,
        rules: Sequence[str] = ("deconvnet", "guided_backprop"),
        scale: int = 2,
        cache_size: int = 128,
        layer: str | None = None,
        channel: int | None = None,
        zoom: bool = True,
    ) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be an integer >= 1 (projections kept), got {cache_size!r:.40}")
        check_model(model)
        check_images(images)
        self.model, self.images, self.k = model, images, as_int("k", k, minimum=1)
        self.rules = rule_names_of(rules)
        self.scale, self.cache_size = check_scale(scale), cache_size
        if layers is None:
            self.layers = relu_layers(model)
        elif isinstance(layers, (str, nn.Module)) or not isinstance(layers, Sequence):
            raise TypeError(f"layers must be a list of module paths, got {layers!r:.60}")
        else:  # module paths, whatever form each layer was given in
            self.layers = [find_layer(model, layer, f"layers[{i}]")[0] for i, layer in enumerate(layers)]
        if not self.layers:
            raise ValueError("no layers to explore: pass layers=[...] (module paths of convolutional layers)")
        self.maxima = channel_maxima(model, images, self.layers)
        self.fields: dict[str, ReceptiveField | None] = {}
        for name in self.layers:
            try:
                self.fields[name] = receptive_field(model, name)
            except ValueError:  # not a plain chain: no box is drawn
                self.fields[name] = None
        self._signals: OrderedDict[tuple[str, int], tuple[TopActivations, dict[str, Tensor]]] = OrderedDict()
        self._pictures: OrderedDict[tuple[str, int, bool], list[list[Panel]]] = OrderedDict()
        self.computed = 0  # projection passes run (cache misses)
        self._adjusting = False
        first = self._first_layer(layer)
        channels = self.maxima[first].shape[0]
        if channel is None:
            channel = self.strongest_channel(first)
        channel = as_int("channel", channel, 0, channels - 1)
        zoom = as_bool("zoom", zoom)
        self.panel_size = fit_width(self.k, images.shape[-1], self.scale, row_labels=True)
        controls = {
            "layer": widgets.SelectionSlider(
                options=list(self.layers), value=first, description="layer", readout=False
            ),
            "channel": widgets.IntSlider(value=channel, min=0, max=channels - 1, description="channel"),
            "zoom": widgets.Checkbox(value=zoom, description="zoom into the receptive field"),
        }
        self.layer_name = widgets.HTML()  # the slider's own readout would cut "features.12" short
        self.caption = widgets.HTML()
        image = widgets.Image(format="png")
        layout = widgets.VBox(
            [
                widgets.HBox([controls["layer"], self.layer_name]),
                widgets.HBox([controls["channel"], controls["zoom"]]),
                image,
                self.caption,
            ]
        )
        self.row_labels = [f"top {self.k}", *(rule_label(rule) for rule in self.rules)]
        self._connect(controls, image, layout)

    def _first_layer(self, layer: str | None) -> str:
        if layer is None:
            return self.layers[max(0, len(self.layers) - 2)]
        if layer not in self.layers:
            raise ValueError(f"layer {layer!r} is not one of the layers explored: {', '.join(self.layers)}")
        return layer

    def strongest_channel(self, layer: str) -> int:
        """The channel of ``layer`` whose ``k`` strongest activations over the images are largest."""
        values = self.maxima[layer].values
        k = min(self.k, values.shape[0])
        return int(values.topk(k, dim=0).values.mean(0).argmax())

    # -- computation (cached) ------------------------------------------------------------------

    def projections(
        self, layer: str | None = None, channel: int | None = None
    ) -> tuple[TopActivations, dict[str, Tensor]]:
        """Top-``k`` ranking and ``{rule: (k, 3, H, W)}`` projections (defaults: the sliders).

        One forward pass of ``k`` images and one backward pass per rule on a miss; cached.
        """
        layer = self.controls["layer"].value if layer is None else layer
        channel = self.controls["channel"].value if channel is None else int(channel)
        key = (layer, channel)
        if key not in self._signals:
            top, signals = project_top(
                self.model, self.images, layer, channel, self.k, self.rules, maxima=self.maxima[layer]
            )
            self._signals[key] = (top, signals)
            self.computed += 1
        self._signals.move_to_end(key)
        _evict(self._signals, self.cache_size)
        return self._signals[key]

    def boxes(self, layer: str, top: TopActivations) -> list[Box]:
        """Each top unit's receptive field in pixels (the whole image if the layer has none)."""
        size = (self.images.shape[-2], self.images.shape[-1])
        field = self.fields[layer]
        return [
            field.box(position, size) if field is not None else (0, size[0], 0, size[1])
            for position in top.positions.tolist()
        ]

    def panels(
        self, layer: str | None = None, channel: int | None = None, zoom: bool | None = None
    ) -> list[list[Panel]]:
        """The rows for a layer, channel and zoom setting (defaults: the controls); cached."""
        layer = self.controls["layer"].value if layer is None else layer
        channel = self.controls["channel"].value if channel is None else int(channel)
        zoom = self.controls["zoom"].value if zoom is None else bool(zoom)
        key = (layer, channel, zoom)
        if key not in self._pictures:
            top, signals = self.projections(layer, channel)
            zoom = zoom and self.fields[layer] is not None
            images = self.images[top.indices]
            self._pictures[key] = projection_panels(images, signals, self.boxes(layer, top), zoom)
        self._pictures.move_to_end(key)
        _evict(self._pictures, 2 * self.cache_size)
        return self._pictures[key]

    def _caption(self, layer: str, channel: int, top: TopActivations) -> str:
        field = self.fields[layer]
        values = ", ".join(f"{v:.2f}" for v in top.values.tolist())
        zoomed = "zoomed in" if self.controls["zoom"].value else "framed"
        rf = f"; receptive field {field.size[0]}×{field.size[1]} px ({zoomed})" if field is not None else ""
        rows = " · ".join(f"row {i + 2}: {rule_label(rule)}" for i, rule in enumerate(self.rules))
        silent = "" if float(top.values[0]) > 0 else " <b>This channel never fires on these images.</b>"
        return (
            f"<b>{html.escape(layer)}</b>, channel <b>{channel}</b>: strongest activations {values}"
            f"{rf}.{silent}<br>row 1: the top {len(top.values)} images · {rows}"
        )

    def summary(self) -> str:
        layer, channel = self.controls["layer"].value, self.controls["channel"].value
        zoomed = ", zoomed into the receptive fields" if self.controls["zoom"].value else ""
        return f"{layer}, channel {channel}: the top {self.k} images and their projections{zoomed}"

    def redraw(self, changed: widgets.Widget | None) -> None:
        """On a layer move, fit the channel slider to the layer; then show the cached picture."""
        if self._adjusting:
            return
        layer = self.controls["layer"].value
        channel_slider = self.controls["channel"]
        if changed is self.controls["layer"]:
            channels = self.maxima[layer].shape[0]
            self._adjusting = True
            try:
                channel_slider.value = min(channel_slider.value, channels - 1)
                channel_slider.max = channels - 1
            finally:
                self._adjusting = False
        channel = channel_slider.value
        top, _ = self.projections(layer, channel)
        self._draw("grid", self.panels(layer, channel))
        number = self.layers.index(layer) + 1
        self.layer_name.value = f"<b>{html.escape(layer)}</b> (layer {number} of {len(self.layers)})"
        self.caption.value = self._caption(layer, channel, top)
