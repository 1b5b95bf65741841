r"""The three backward rules side by side: one point ``(x, p)``, three answers.

Each rule replaces the backward of ReLU by :math:`\operatorname{ReLU}^*(x, p)`, with
``x`` the ReLU's forward input and ``p`` the signal from above:

* gradient [GRAD]: ``p·[x>0]``
* DeConvNet [DECONV]: ``p·[p>0]`` (``x`` is ignored)
* guided backprop [GBP]: ``p·[x>0]·[p>0]``

:func:`deconvlab.metrics.rule_plane` evaluates a rule (the library's own function from
:mod:`deconvlab.rules`) over a grid of the ``(x, p)`` plane; :class:`RuleExplorer`
shows the three planes with the current point marked and the three values
live; :func:`plot_rule_planes` draws the planes with labelled axes (matplotlib).

References
----------
.. [GRAD] Simonyan, Vedaldi and Zisserman, ICLR Workshop 2014, https://arxiv.org/abs/1312.6034.
.. [DECONV] Zeiler and Fergus, ECCV 2014, https://doi.org/10.1007/978-3-319-10590-1_53.
.. [GBP] Springenberg et al., ICLR Workshop 2015, https://arxiv.org/abs/1412.6806.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np

from ..checks import as_int, as_real
from ..metrics import relu_star, rule_plane
from ..rules import BUILTIN_NAMES, RuleLike, get_rule
from ..viz import png_bytes
from ._base import Explorer, check_scale, rule_names_of

__all__ = ["RuleExplorer", "plot_rule_planes"]

_CMAP = "RdBu_r"  # red > 0, white = 0, blue < 0


def _plane_rgb(values: np.ndarray, extent: float, scale: int) -> np.ndarray:
    """Colour a plane (red positive, blue negative), draw the axes, enlarge: uint8 RGB."""
    import matplotlib

    rgb = matplotlib.colormaps[_CMAP](0.5 + 0.5 * values / extent)[..., :3]
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    centre = (values.shape[0] // 2) * scale + scale // 2
    rgb[centre, :] = rgb[:, centre] = 0.45  # the axes x = 0 and p = 0, grey
    return (rgb * 255 + 0.5).astype(np.uint8)


def _disc_offsets(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


class RuleExplorer(Explorer):
    """Sliders for ``x`` and ``p``; the three rules' ``ReLU*(x, p)`` live, on their planes.

    The three plane pictures are computed once; a slider move only evaluates the
    three rules at one point and stamps a marker onto copies of the cached pictures.

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
        ``> 0``; ``resolution`` is no odd integer from 3 to 2001 (and ``resolution * scale`` at
        most 2048 pixels); ``scale`` is no integer from 1 to 16; ``x`` or ``p`` lies outside the planes.

    Attributes
    ----------
    images : dict of str to ipywidgets.Image
        One plane picture per rule.
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
        if resolution * scale > 2048:
            raise ValueError(
                f"resolution * scale = {resolution * scale} pixels per plane; keep it at most 2048"
            )
        x, p = as_real("x", x), as_real("p", p)
        for name, value in (("x", x), ("p", p)):
            if not -extent <= value <= extent:
                raise ValueError(f"{name} must be between -{extent:g} and {extent:g} (extent), got {value:g}")
        self.extent, self.resolution, self.scale = extent, resolution, scale
        self.planes = {name: rule_plane(name, extent, resolution) for name in self.rules}
        self._rgb = {name: _plane_rgb(v, self.extent, self.scale) for name, v in self.planes.items()}
        self._outer = _disc_offsets(max(3, 2 * self.scale + 1))
        self._inner = _disc_offsets(max(2, 2 * self.scale - 1))
        self.images = {name: widgets.Image(format="png") for name in self.rules}
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
        panels = [
            widgets.VBox(
                [
                    widgets.HTML(
                        f"<b>{html.escape(self.rules[name].label)}</b>: ReLU*(x, p) = "
                        f"{html.escape(self.rules[name].equation)}"
                    ),
                    image,
                ]
            )
            for name, image in self.images.items()
        ]
        caption = widgets.HTML(
            f"Each picture is the rule over the plane: x from −{self.extent:g} (left) to "
            f"{self.extent:g} (right), p from −{self.extent:g} (bottom) to {self.extent:g} (top); "
            "red &gt; 0, white = 0, blue &lt; 0; grey lines are x = 0 and p = 0; "
            "the black dot is the current (x, p)."
        )
        view = widgets.VBox([widgets.HBox(panels), caption, self.readout])
        self._connect(sliders, view)

    def values(self) -> dict[str, float]:
        """``ReLU*(x, p)`` of each rule at the sliders' current point."""
        x, p = self.controls["x"].value, self.controls["p"].value
        return {name: relu_star(rule, x, p) for name, rule in self.rules.items()}

    def marker_pixel(self) -> tuple[int, int]:
        """``(row, column)`` of the current point in the enlarged pictures."""
        half = (self.resolution - 1) / 2
        column = round((self.controls["x"].value / self.extent + 1) * half)
        row = round((1 - self.controls["p"].value / self.extent) * half)
        return row * self.scale + self.scale // 2, column * self.scale + self.scale // 2

    def _marked(self, rgb: np.ndarray, row: int, column: int) -> np.ndarray:
        out = rgb.copy()
        for (dy, dx), colour in ((self._outer, 255), (self._inner, 0)):
            r, c = row + dy, column + dx
            keep = (r >= 0) & (r < out.shape[0]) & (c >= 0) & (c < out.shape[1])
            out[r[keep], c[keep]] = colour
        return out

    def redraw(self, changed: widgets.Widget | None) -> None:
        row, column = self.marker_pixel()
        for name, image in self.images.items():
            image.value = png_bytes(self._marked(self._rgb[name], row, column))
        x, p = self.controls["x"].value, self.controls["p"].value
        rows = "".join(
            f"<tr><td>{html.escape(self.rules[name].label)}</td>"
            f"<td><code>{html.escape(self.rules[name].equation)}</code></td>"
            f"<td style='text-align:right'>{value:+.2f}</td></tr>"
            for name, value in self.values().items()
        )
        self.readout.value = (
            f"<p>x = {x:+.2f}, p = {p:+.2f}</p><table><tr><th>rule</th><th>ReLU*(x, p)</th>"
            f"<th>value</th></tr>{rows}</table>"
        )


def plot_rule_planes(
    rules: Sequence[RuleLike] = BUILTIN_NAMES,
    extent: float = 1.0,
    resolution: int = 81,
    point: tuple[float, float] | None = None,
):
    """The rules over the ``(x, p)`` plane with labelled axes (a matplotlib ``Figure``).

    ``point=(x, p)`` marks one point on every panel.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(rules), 3.2), layout="constrained")
    axes = fig.subplots(1, len(rules), squeeze=False)[0]
    for ax, rule in zip(axes, map(get_rule, rules)):
        shown = ax.imshow(
            rule_plane(rule, extent, resolution),
            cmap=_CMAP,
            vmin=-extent,
            vmax=extent,
            extent=(-extent, extent, -extent, extent),
            interpolation="nearest",
        )
        ax.axhline(0, color="0.45", lw=0.8)
        ax.axvline(0, color="0.45", lw=0.8)
        if point is not None:
            ax.plot(*point, "o", color="black", markeredgecolor="white")
        ax.set_xlabel("x (forward input of the ReLU)")
        ax.set_ylabel("p (signal from above)")
        ax.set_title(f"{rule.label}: {rule.equation}", fontsize=10)
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="ReLU*(x, p)")
    return fig
