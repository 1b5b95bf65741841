r"""The three backward rules side by side: one point ``(x, p)``, three answers.

Each rule replaces the backward of ReLU by :math:`\operatorname{ReLU}^*(x, p)`, with
``x`` the ReLU's forward input and ``p`` the signal from above:

* gradient [GRAD]: ``p·[x>0]``
* DeConvNet [DECONV]: ``p·[p>0]`` (``x`` is ignored)
* guided backprop [GBP]: ``p·[x>0]·[p>0]``

:func:`deconvlab.metrics.rule_plane` evaluates a rule (the library's own function from
:mod:`deconvlab.rules`) over a grid of the ``(x, p)`` plane; :class:`RuleExplorer`
shows the three planes with the current point marked and the three values
live; :func:`deconvlab.viz.plot_rule_planes` draws the same figure without a slider.

References
----------
.. [GRAD] Simonyan, Vedaldi and Zisserman, ICLR Workshop 2014, https://arxiv.org/abs/1312.6034.
.. [DECONV] Zeiler and Fergus, ECCV 2014, https://doi.org/10.1007/978-3-319-10590-1_53.
.. [GBP] Springenberg et al., ICLR Workshop 2015, https://arxiv.org/abs/1412.6806.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import replace

import ipywidgets as widgets
import numpy as np

from ..checks import as_int, as_real
from ..metrics import relu_star
from ..rules import BUILTIN_NAMES, get_rule
from ..viz import mark_point, plane_pixel, plot_rule_planes, rule_plane_panels
from ._base import Explorer, check_scale, rule_names_of

__all__ = ["RuleExplorer", "plot_rule_planes"]


class RuleExplorer(Explorer):
    """Sliders for ``x`` and ``p``; the three rules' ``ReLU*(x, p)`` live, on their planes.

    The three plane pictures (:func:`deconvlab.viz.rule_plane_panels`: one size, labelled axes,
    a colour key each) are computed once; a slider move only evaluates the three rules at one
    point and stamps a marker onto copies of the cached pictures.

    Parameters
    ----------
    rules : sequence of str
        Rules to compare (default: gradient, deconvnet, guided_backprop).
    extent : float
        Slider and plane range ``[-extent, extent]`` for both ``x`` and ``p``.
    resolution : int
        Grid points per axis of each plane (odd, so that 0 is on the grid).
    scale : int
        Screen pixels per grid point.
    x, p : float
        Starting point, within ``[-extent, extent]``.

    Raises
    ------
    TypeError, ValueError
        A bad argument, named: ``rules`` is no list of known rules; ``extent`` is no number
        ``> 0``; ``resolution`` is no odd integer from 3 to 2001 (and ``resolution * scale``
        from 16 to 2048 pixels); ``scale`` is no integer from 1 to 16; ``x`` or ``p`` lies
        outside the planes.

    Attributes
    ----------
    planes : dict of str to ndarray
        ``ReLU*(x, p)`` of each rule over the grid.
    rows : list of lists of Panel
        The panels shown now (one row, one plane per rule, the point marked).
    readout : ipywidgets.HTML
        The table of the three values.
    """

    def __init__(
        self,
        rules: Sequence[str] = BUILTIN_NAMES,
        extent: float = 1.0,
        resolution: int = 81,
        scale: int = 2,
        x: float = -0.4,
        p: float = 0.6,
    ) -> None:
        self.rules = {name: get_rule(name) for name in rule_names_of(rules)}
        extent = as_real("extent", extent, above=0)
        resolution, scale = as_int("resolution", resolution, 3, 2001), check_scale(scale)
        if not 16 <= resolution * scale <= 2048:
            raise ValueError(
                f"resolution * scale = {resolution * scale} pixels per plane; keep it between 16 and 2048"
            )
        x, p = as_real("x", x), as_real("p", p)
        for name, value in (("x", x), ("p", p)):
            if not -extent <= value <= extent:
                raise ValueError(f"{name} must be between -{extent:g} and {extent:g} (extent), got {value:g}")
        self.extent, self.resolution, self.scale = extent, resolution, scale
        self._panels = rule_plane_panels(list(self.rules), extent, resolution, scale=scale)
        self.planes = {name: self._plane(name) for name in self.rules}
        self.readout = widgets.HTML()
        step = 2 * self.extent / (self.resolution - 1) * 2
        sliders = {
            name: widgets.FloatSlider(
                value=value,
                min=-self.extent,
                max=self.extent,
                step=step,
                description=name,
                readout_format=".2f",
            )
            for name, value in (("x", x), ("p", p))
        }
        caption = widgets.HTML(
            "Each picture is the rule over the plane of x (forward input of the ReLU) and p (signal "
            "from above): red &gt; 0, white = 0, blue &lt; 0; grey lines are x = 0 and p = 0; "
            "the black dot is the current (x, p)."
        )
        view = widgets.VBox([widgets.Image(format="png"), caption, self.readout])
        self._connect(sliders, view.children[0], widgets.VBox([widgets.HBox(list(sliders.values())), view]))

    def _plane(self, name: str) -> np.ndarray:
        from ..metrics import rule_plane

        return rule_plane(name, self.extent, self.resolution)

    def values(self) -> dict[str, float]:
        """``ReLU*(x, p)`` of each rule at the sliders' current point."""
        x, p = self.controls["x"].value, self.controls["p"].value
        return {name: relu_star(rule, x, p) for name, rule in self.rules.items()}

    def marker_pixel(self) -> tuple[int, int]:
        """``(row, column)`` of the current point in the enlarged pictures."""
        point = (self.controls["x"].value, self.controls["p"].value)
        return plane_pixel(point, self.extent, self.resolution, self.scale)

    def pictures(self) -> dict[str, np.ndarray]:
        """The plane picture of each rule as shown now, ``(H, W, 3)`` in [0, 1]."""
        return {
            name: panel.image
            for name, panel in zip(self.rules, self.rows[0])
            if panel and panel.image is not None
        }

    def redraw(self, changed: widgets.Widget | None) -> None:
        pixel = self.marker_pixel()
        row = [replace(p, image=mark_point(np.asarray(p.image), pixel, self.scale)) for p in self._panels]
        self._draw("planes", [row])
        rows = "".join(
            f"<tr><td>{html.escape(self.rules[name].label)}</td>"
            f"<td><code>{html.escape(self.rules[name].equation)}</code></td>"
            f"<td style='text-align:right'>{value:+.2f}</td></tr>"
            for name, value in self.values().items()
        )
        self.readout.value = (
            f"<p>{html.escape(self.summary())}</p><table><tr><th>rule</th><th>ReLU*(x, p)</th>"
            f"<th>value</th></tr>{rows}</table>"
        )

    def summary(self) -> str:
        x, p = self.controls["x"].value, self.controls["p"].value
        values = ", ".join(f"{self.rules[n].label} {v:+.2f}" for n, v in self.values().items())
        return f"x = {x:+.2f}, p = {p:+.2f}: ReLU*(x, p) = {values}"
