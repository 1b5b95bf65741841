"""Turning backpropagated signals into pictures, and pictures into figures by the field's conventions.

The three standard displays of one signal:

* :func:`signed_image` -- the signed signal centred on grey, as in the figures of Zeiler & Fergus
  (ECCV 2014) and Springenberg et al. (ICLR-W 2015): grey is zero, bright is positive, dark is
  negative, and colour is kept.
* :func:`heatmap` -- the "saliency map" of Simonyan et al. (ICLR-W 2014, §3.1): the maximum of
  ``|signal|`` over colour channels through a colour map.
* :func:`overlay` -- the heat map laid over the greyed, dimmed input, more opaque where it is stronger.

Figures follow the field's conventions (:func:`panel_figure`): every panel of a figure has one size;
every map has a colour key that states where it is clipped (the 99th percentile of ``|signal|``,
:data:`PERCENTILE`, by default); a ground-truth outline goes on the input only; text is at least
10 px at the figure's own size, and a figure is at most :data:`MAX_WIDTH` px wide, so that a
notebook's output area does not shrink it. :func:`figure_grid` (rules x images),
:func:`plot_rule_planes` (``ReLU*(x, p)`` over the plane) and the explorers' pictures are built on it;
:class:`PanelCanvas` redraws such a figure's panels in a few milliseconds, for sliders.

:func:`png_bytes` encodes an array as PNG with PIL only. Arrays come back as NumPy ``float32`` in
[0, 1], ``(H, W, 3)`` for colour and ``(H, W)`` for grey. Figures are matplotlib ``Figure`` objects
never registered with pyplot: nothing to close, and garbage-collected like any object.

Every function refuses a bad argument with ``TypeError`` (no array of numbers, no number, no
bool) or ``ValueError`` (a wrong shape, a value out of range, an unknown colour map), the
message naming the parameter (:mod:`deconvlab.checks`).
"""

from __future__ import annotations

import html
import inspect
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Optional

import numpy as np
import torch
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from .checks import as_array, as_bool, as_choice, as_int, as_real
from .rules import BUILTIN_NAMES, get_rule

__all__ = [
    "MAX_WIDTH",
    "PERCENTILE",
    "PLANE_CMAP",
    "ColourKey",
    "GridFigure",
    "Panel",
    "PanelCanvas",
    "PlaneAxes",
    "Rows",
    "as_image",
    "draw_box",
    "figure_grid",
    "figure_png",
    "fit_width",
    "heat_key",
    "heatmap",
    "map_panels",
    "mark_point",
    "outline_mask",
    "overlay",
    "overlay_key",
    "panel_figure",
    "plane_image",
    "plane_key",
    "plane_pixel",
    "plot_maps",
    "plot_projections",
    "plot_rule_planes",
    "png_bytes",
    "projection_panels",
    "rule_heading",
    "rule_label",
    "rule_plane_panels",
    "rule_title",
    "saliency",
    "signed_image",
    "signed_key",
]

#: Figures clip each map at this percentile of ``|signal|`` and say so in its colour key.
PERCENTILE = 99.0
#: Widest figure, in pixels: a notebook's output area (about 850 px in JupyterLab with its file
#: browser open) shrinks wider pictures, and their text with them.
MAX_WIDTH = 860
DPI = 100
_TITLE_PT, _TEXT_PT = 10.0, 8.0  # 13.9 px and 11.1 px at DPI: nothing smaller is drawn


def rule_label(key: str) -> str:
    """How a map keyed ``key`` is titled: a registered rule's label (``"guided backprop"``), a
    composition's (``"Guided Grad-CAM"``, :data:`deconvlab.sanity.COMPOSITION_LABELS`), else ``key``."""
    try:
        return get_rule(key).label
    except (TypeError, ValueError):
        return _composition_label(key)


def _composition_label(key: object) -> str:
    from .sanity import COMPOSITION_LABELS

    return COMPOSITION_LABELS.get(key, key) if isinstance(key, str) else str(key)


def rule_heading(key: str) -> str:
    """HTML heading of a rule's panel: its label in bold, then its equation."""
    try:
        rule = get_rule(key)
    except (TypeError, ValueError):
        return f"<b>{html.escape(_composition_label(key))}</b>"
    return f"<b>{html.escape(rule.label)}</b> {html.escape(rule.equation)}"


def rule_title(key: str) -> str:
    """Plain-text title of a rule's panel: its label, then its equation on a second line."""
    try:
        rule = get_rule(key)
    except (TypeError, ValueError):
        return _composition_label(key)
    return f"{rule.label}\n{rule.equation}" if rule.equation else rule.label


# ------------------------------------------------------------------------------------------
# one signal -> one picture
# ------------------------------------------------------------------------------------------


def _numpy(x, name: str = "signal") -> np.ndarray:
    """``x`` (a tensor or array of numbers, else TypeError/ValueError naming ``name``) as float32."""
    x = as_array(name, x)
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def _chw(signal, name: str = "signal") -> np.ndarray:
    """One signal as ``(C, H, W)``; accepts ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)``."""
    s = _numpy(signal, name)
    if s.ndim == 4:
        if s.shape[0] != 1:
            raise ValueError(
                f"{name} is a batch of {s.shape[0]}, where one is expected; index it first: {name}[0]"
            )
        s = s[0]
    if s.ndim == 2:
        s = s[None]
    if s.ndim != 3:
        raise ValueError(f"{name} has shape {tuple(s.shape)}; expected (C, H, W)")
    return s


def _cmap(cmap: object) -> str:
    import matplotlib

    cmap = as_choice("cmap", cmap, list(matplotlib.colormaps)) if isinstance(cmap, str) else cmap
    if not isinstance(cmap, str):
        raise TypeError(
            f"cmap must be the name of a matplotlib colour map such as 'inferno', got {type(cmap).__name__}"
        )
    return cmap


def _finite(s: np.ndarray) -> np.ndarray:
    """``s`` with its non-finite values (NaN, ±inf) set to 0, with a warning saying how many.

    One NaN would otherwise make the scale NaN and the whole picture blank.
    """
    bad = ~np.isfinite(s)
    if not bad.any():
        return s
    warnings.warn(
        f"{int(bad.sum())} of {s.size} signal values are not finite (NaN or inf); "
        "they are drawn as 0 and left out of the scale",
        RuntimeWarning,
        stacklevel=3,
    )
    return np.where(bad, np.float32(0), s)


def _scale_of(a: np.ndarray, percentile: float) -> float:
    """The ``percentile``-th percentile of the magnitudes ``a`` (their maximum at 100)."""
    return float(a.max() if percentile >= 100 else np.percentile(a, percentile))


def as_image(x, imagenet: bool = False) -> np.ndarray:
    """An input image ``(3, H, W)`` (tensor or array) as ``(H, W, 3)`` float in [0, 1].

    ``imagenet=True`` first undoes the ImageNet normalisation (``x * std + mean``).
    ``TypeError`` or ``ValueError`` if ``x`` is no such image or ``imagenet`` no bool.
    """
    return _as_image(x, imagenet, "x")


def _as_image(x, imagenet: bool, name: str) -> np.ndarray:
    imagenet = as_bool("imagenet", imagenet)
    img = _chw(x, name)
    if img.shape[0] not in (1, 3):
        raise ValueError(
            f"{name} has {img.shape[0]} channels; expected an RGB (3, H, W) or grey (1, H, W) image"
        )
    if imagenet and img.shape[0] != 3:
        raise ValueError(f"{name} has {img.shape[0]} channels; imagenet=True needs RGB images (3, H, W)")
    if imagenet:
        from .data import IMAGENET_MEAN, IMAGENET_STD

        std = np.array(IMAGENET_STD, dtype=np.float32)
        mean = np.array(IMAGENET_MEAN, dtype=np.float32)
        img = img * std[:, None, None] + mean[:, None, None]
    img = np.clip(img, 0.0, 1.0)
    return img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))


def signed_image(signal, percentile: float = 100.0, scale: float | None = None) -> np.ndarray:
    """Signed signal for display: ``0.5 + 0.5 * signal / max|signal|``.

    Zero maps to mid-grey; the sign and the colour of the signal stay visible, as in the
    DeConvNet and guided-backpropagation papers.

    Parameters
    ----------
    signal : tensor or array
        ``(C, H, W)`` (or ``(1, C, H, W)``). Three channels give a colour image; any other
        number is summed over channels into one grey image.
    percentile : float, default 100
        Scale by this percentile of ``|signal|`` instead of the maximum (values beyond it are
        clipped); e.g. 99 keeps a few extreme pixels from washing out the picture.
    scale : float, optional
        Divide by this instead (e.g. a percentile measured on part of the signal).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` or ``(H, W)`` float32 in [0, 1].

    Raises
    ------
    TypeError, ValueError
        ``signal`` is no such array of numbers; ``percentile`` is no number in ``[0, 100]``;
        ``scale`` is no number ``>= 0``.

    Notes
    -----
    Non-finite values (NaN, ±inf) are drawn as 0, i.e. mid-grey, and left out of the scale, so
    that the rest of the picture stays visible; a ``RuntimeWarning`` says how many there are.
    """
    percentile = as_real("percentile", percentile, 0, 100)
    s = _finite(_chw(signal))
    if s.shape[0] != 3:
        s = s.sum(0, keepdims=True)
    scale = _scale_of(np.abs(s), percentile) if scale is None else as_real("scale", scale, minimum=0)
    out = 0.5 + 0.5 * s / scale if scale > 0 else np.full_like(s, 0.5)
    out = np.clip(out, 0.0, 1.0, out=out)
    return out[0] if out.shape[0] == 1 else np.ascontiguousarray(out.transpose(1, 2, 0))


def saliency(signal, percentile: float = 100.0) -> np.ndarray:
    """``max_c |signal|`` scaled to [0, 1]: Simonyan et al.'s saliency map, ``(H, W)``.

    ``percentile`` scales by that percentile of the map instead of its maximum (clipping above).
    Non-finite values (NaN, ±inf) count as 0 and are left out of the scale (with a warning).
    ``TypeError`` or ``ValueError`` if ``signal`` is no ``(C, H, W)`` array of numbers or
    ``percentile`` no number in ``[0, 100]``.
    """
    percentile = as_real("percentile", percentile, 0, 100)
    s = np.abs(_finite(_chw(signal))).max(0)
    m = _scale_of(s, percentile)
    return np.minimum(s / m, 1.0) if m > 0 else s


def _colormap(values: np.ndarray, cmap) -> np.ndarray:
    import matplotlib

    table = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    return table(values, bytes=False)[..., :3].astype(np.float32)


def heatmap(signal, cmap: str | None = "inferno", percentile: float = 100.0) -> np.ndarray:
    """Channel-max ``|signal|`` heat map (Simonyan et al., ICLR-W 2014).

    Parameters
    ----------
    signal : tensor or array
        ``(C, H, W)`` signal (any number of channels, e.g. a layer's).
    cmap : str or None, default "inferno"
        matplotlib colour map; ``None`` returns the grey ``(H, W)`` map.
    percentile : float, default 100
        The percentile of the map drawn at full scale (higher values are clipped).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` (or ``(H, W)``) float32 in [0, 1].

    Raises
    ------
    TypeError, ValueError
        ``signal`` as in :func:`saliency`; ``cmap`` is no colour map name (nor None);
        ``percentile`` is no number in ``[0, 100]``.
    """
    cmap = None if cmap is None else _cmap(cmap)
    s = saliency(signal, percentile)
    return s if cmap is None else _colormap(s, cmap)


# The overlay: input greyed to [_FLOOR, _FLOOR + _SPAN] (dimmed, so any colour shows on it), heat
# coloured from _LOW up the colour map (no near-black), opacity alpha * h ** _GAMMA.
_FLOOR, _SPAN, _LOW, _GAMMA = 0.15, 0.5, 0.3, 0.5


def overlay(
    image,
    signal,
    alpha: float = 0.9,
    cmap: str = "inferno",
    imagenet: bool = False,
    percentile: float = PERCENTILE,
):
    """A heat map laid over the greyed, dimmed input, more opaque where the map is stronger.

    ``out = g * (1 - a) + a * cmap(0.3 + 0.7 h)`` with ``g = 0.15 + 0.5 * luminance(image)``
    (grey, so that the colours of the heat map cannot be confused with the image's) and
    ``a = alpha * sqrt(h)``, ``h`` the heat map in [0, 1] (:func:`saliency` clipped at
    ``percentile``). Where ``h = 0`` the greyed input shows; see :func:`overlay_key`.

    Parameters
    ----------
    image : tensor or array
        ``(3, H, W)`` input, in [0, 1] (or ImageNet-normalised with ``imagenet=True``), or an
        ``(H, W, 3)`` array in [0, 1].
    signal : tensor or array
        A ``(C, H, W)`` signal, or an ``(H, W)`` heat map already in [0, 1]. A map of another
        size (e.g. a layer's) is resized bilinearly to the image.
    alpha : float, default 0.9
        Opacity of the strongest part of the map.
    percentile : float, default 99
        The percentile of ``|signal|`` drawn at full strength (ignored for an ``(H, W)`` map).

    Raises
    ------
    TypeError, ValueError
        ``image`` or ``signal`` is no such array of numbers; ``alpha`` is no number in ``[0, 1]``;
        ``cmap`` is no colour map name; ``imagenet`` is no bool; ``percentile`` is no number in
        ``[0, 100]``.
    """
    alpha, cmap = as_real("alpha", alpha, 0, 1), _cmap(cmap)
    percentile = as_real("percentile", percentile, 0, 100)
    img = _hwc(image, imagenet)
    h = _numpy(signal)
    h = saliency(h, percentile) if h.ndim != 2 else np.clip(_finite(h), 0, 1)
    if h.shape != img.shape[:2]:
        h = _resize(h, img.shape[:2])
    grey = _FLOOR + _SPAN * (img @ np.asarray([0.299, 0.587, 0.114], np.float32))
    a = (alpha * np.sqrt(h))[..., None]
    return (grey[..., None] * (1 - a) + a * _colormap(_LOW + (1 - _LOW) * h, cmap)).astype(np.float32)


def _resize(h: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(h))[None, None]
    t = torch.nn.functional.interpolate(t, size=shape, mode="bilinear", align_corners=False)
    return t[0, 0].clamp(0, 1).numpy()


def _hwc(image, imagenet: bool = False, name: str = "image") -> np.ndarray:
    a = _numpy(image, name)
    if a.ndim == 3 and a.shape[-1] == 3 and a.shape[0] != 3:
        as_bool("imagenet", imagenet)
        return np.clip(a, 0, 1)
    img = _as_image(a, imagenet, name)
    return np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img


def outline_mask(
    image,
    mask,
    color: Sequence[float] = (0.0, 1.0, 0.0),
    imagenet: bool = False,
    mode: str = "inner",
    halo: bool = False,
) -> np.ndarray:
    """Draw the contour of a ground-truth ``mask`` (``(H, W)`` bool) on ``image``; ``(H, W, 3)``.

    ``mode="inner"`` colours the mask's own border pixels, ``"outer"`` the ring just outside it
    (leaving the object intact), ``"thick"`` both; see :func:`skimage.segmentation.find_boundaries`.
    ``halo=True`` adds a black ring just outside the contour (with ``mode="inner"``), so that the
    outline shows on a background of its own colour.
    ``TypeError`` or ``ValueError`` for an ``image`` or ``mask`` that is no such array or whose sizes
    differ, a ``color`` that is no three numbers in [0, 1], another ``mode``.
    """
    from skimage.segmentation import find_boundaries

    mode = as_choice("mode", mode, ("inner", "outer", "thick"))
    colour = _numpy(color, "color")
    if colour.shape != (3,) or not bool(((colour >= 0) & (colour <= 1)).all()):
        raise ValueError(
            f"color must be three numbers (red, green, blue) in [0, 1], got {colour.tolist()!r:.60}"
        )
    img = _hwc(image, imagenet).copy()
    m = _numpy(mask, "mask")
    if m.shape != img.shape[:2]:
        raise ValueError(
            f"mask has shape {m.shape} but the image is {img.shape[:2]}; give an (H, W) mask of its size"
        )
    edge = find_boundaries(m > 0.5, mode=mode)
    if as_bool("halo", halo) and mode == "inner":
        img[find_boundaries(m > 0.5, mode="outer")] = 0.0
    img[edge] = colour
    return img


def png_bytes(array, scale: int = 1, compress_level: int = 1) -> bytes:
    """Encode an ``(H, W, 3)`` / ``(H, W)`` image in [0, 1] (or uint8) as PNG bytes with PIL.

    ``scale`` enlarges it by pixel repetition (nearest neighbour), so that small maps stay crisp.
    A few milliseconds for a 64-px map: suitable for ``ipywidgets.Image(value=...)`` callbacks.
    ``TypeError`` or ``ValueError`` for an ``array`` that is no such image, a ``scale`` that is no
    integer from 1 to 64 (or would make more than 64 megapixels), a ``compress_level`` outside 0..9.
    """
    from PIL import Image

    array = as_array("array", array, {2: "(H, W)", 3: "(H, W, 3)"})
    a = array.detach().cpu().float().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if a.ndim == 3 and a.shape[-1] not in (3, 4):
        raise ValueError(f"array has shape {a.shape}; expected (H, W) grey or (H, W, 3) colour")
    scale = as_int("scale", scale, 1, 64)
    compress_level = as_int("compress_level", compress_level, 0, 9)
    if a.shape[0] * a.shape[1] * scale * scale > 2**26:
        raise ValueError(
            f"scale={scale} would make a picture of {a.shape[0] * scale} x {a.shape[1] * scale} pixels"
        )
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    im = Image.fromarray(a)
    if scale != 1:
        # resample=0 is Image.NEAREST, which Pillow defines at run time (invisible to mypy); its
        # Image.Resampling.NEAREST needs Pillow >= 9.1.
        im = im.resize((a.shape[1] * scale, a.shape[0] * scale), resample=0)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------
# colour keys: what a panel's colours mean, and where it is clipped
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColourKey:
    """A colour key (a horizontal colour bar) drawn under a panel.

    ``cmap`` spans ``low`` to ``high``; ``ticks`` are values in that range, named by
    ``ticklabels``; ``label`` says what is shown and where it is clipped (lines split by ``\\n``).
    """

    cmap: str | Colormap
    low: float
    high: float
    ticks: tuple[float, ...]
    ticklabels: tuple[str, ...]
    label: str


def _clip_name(percentile: float) -> str:
    return "max" if percentile >= 100 else f"p{percentile:g}"


def _clip_text(percentile: float, of: str) -> str:
    if percentile >= 100:
        return f"max = largest\n{of}"
    return f"p{percentile:g} = {_ordinal(percentile)} percentile\nof {of}"


def _ordinal(number: float) -> str:
    if number != int(number):
        return f"{number:g}th"
    n = int(number)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def signed_key(percentile: float = PERCENTILE, of: str = "|signal|") -> ColourKey:
    """The key of :func:`signed_image` pictures: grey ramp from ``-p99`` (black) to ``+p99`` (white)."""
    name = _clip_name(percentile)
    return ColourKey(
        "gray", -1.0, 1.0, (-1.0, 0.0, 1.0), (f"−{name}", "0", f"+{name}"), _clip_text(percentile, of)
    )


def heat_key(percentile: float = PERCENTILE, cmap: str = "inferno", of: str = "max_c |signal|") -> ColourKey:
    """The key of :func:`heatmap` pictures: 0 to the clipping percentile of the map."""
    return ColourKey(cmap, 0.0, 1.0, (0.0, 1.0), ("0", _clip_name(percentile)), _clip_text(percentile, of))


def overlay_key(percentile: float = PERCENTILE, cmap: str = "inferno", alpha: float = 0.9) -> ColourKey:
    """The key of :func:`overlay` pictures: the colour each strength takes over mid-grey."""
    from matplotlib.colors import ListedColormap

    h = np.linspace(0, 1, 256, dtype=np.float32)
    over = overlay(np.full((1, 256, 3), 0.5, np.float32), h[None], alpha=alpha, cmap=cmap)[0]
    return replace(heat_key(percentile), cmap=ListedColormap(over))


# ------------------------------------------------------------------------------------------
# panel figures: one size for every panel, keys, large enough text
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneAxes:
    """Labelled axes around a panel that shows a function over a rectangle (e.g. the (x, p) plane)."""

    extent: tuple[float, float, float, float]  # left, right, bottom, top
    xlabel: str
    ylabel: str
    ticks: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    """One picture of a figure: an image in [0, 1], its title, its colour key.

    ``image`` is ``(H, W)`` grey or ``(H, W, 3)`` colour (drawn to the figure's panel size, nearest
    neighbour), or None for a blank panel. The title's first line is bold. ``highlight`` frames the
    panel (the selected one). ``key_span`` widens the key over that many columns (for a row of
    tiles that share one key).
    """

    image: np.ndarray | None
    title: str = ""
    key: ColourKey | None = None
    axes: PlaneAxes | None = None
    highlight: bool = False
    key_span: int = 1


Rows = Sequence[Sequence[Optional[Panel]]]

_MARGIN, _GAP = 8, 10
_MIN_PANEL = 144  # px: room for a title ("guided backprop" is 132 px) and a key under a small image
_TITLE_LINE, _TEXT_LINE = 18, 15  # line heights in px of 10 pt and 8 pt text at DPI
_BAR = 9  # height of a colour bar
_AXES_LEFT, _AXES_BELOW = 46, 38  # room for tick labels and axis labels
_HIGHLIGHT = (1.0, 0.72, 0.0)


@dataclass(frozen=True)
class _Box:
    """A rectangle in pixels, from the figure's top-left corner."""

    x: int
    y: int
    w: int
    h: int


Line = tuple[str, bool]  # a line of text, and whether it is a bold 10-pt heading (else 8 pt)


@dataclass(frozen=True)
class _Cell:
    panel: _Box
    title_y: int  # top of the title's first line
    title: tuple[Line, ...]
    key: _Box | None
    key_label: tuple[str, ...]


@lru_cache(maxsize=4096)
def _text_px(text: str, bold: bool) -> float:
    """Width in pixels of one line of ``text`` (bold 10 pt, else 8 pt) at :data:`DPI`."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font = FontProperties(size=_TITLE_PT if bold else _TEXT_PT, weight="bold" if bold else "normal")
    return TextToPath().get_text_width_height_descent(text, font, ismath=False)[0] * DPI / 72


def _wrap(text: str, width: float, bold: bool = False) -> list[str]:
    """``text`` in lines no wider than ``width`` px (split at spaces; ``\n`` starts a new line)."""
    out: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split(" "):
            trial = f"{line} {word}" if line else word
            if line and _text_px(trial, bold) > width:
                out.append(line)
                line = word
            else:
                line = trial
        out.append(line)
    return out


def _title_lines(title: str, width: float) -> tuple[Line, ...]:
    """The heading (first line of ``title``, bold) and the rest, each wrapped to ``width``."""
    if not title:
        return ()
    head, _, rest = title.partition("\n")
    lines = [(line, True) for line in _wrap(head, width, True)]
    return tuple(lines + ([(line, False) for line in _wrap(rest, width)] if rest else []))


def _lines_height(lines: Sequence[Line]) -> int:
    return sum(_TITLE_LINE if bold else _TEXT_LINE for _, bold in lines)


def _key_height(labels: Sequence[Sequence[str]]) -> int:
    if not labels:
        return 0
    return 6 + _BAR + 3 + _TEXT_LINE + max(len(label) for label in labels) * _TEXT_LINE + 4


@dataclass(frozen=True)
class _Layout:
    width: int
    height: int
    cells: tuple[tuple[_Cell | None, ...], ...]
    rows_y: tuple[tuple[int, int], ...]  # (top, height) of each row's panels
    title_lines: tuple[str, ...]
    caption_lines: tuple[str, ...]
    caption_y: int


def _layout(rows: Rows, size: tuple[int, int], title: str, caption: str, row_labels: bool) -> _Layout:
    """Where everything goes, in pixels: the same panel size in every cell of the grid."""
    h, w = size
    columns = max(len(row) for row in rows)
    plane = any(p is not None and p.axes is not None for row in rows for p in row)
    left_band = _AXES_LEFT if plane else 0
    left = _MARGIN + (_TITLE_LINE + 4 if row_labels else 0)
    width = left + columns * (left_band + w) + (columns - 1) * _GAP + _MARGIN
    title_lines = tuple(_wrap(title, width - 2 * _MARGIN, True)) if title else ()
    y = _MARGIN + (len(title_lines) * _TITLE_LINE + 6 if title_lines else 0)
    cells, rows_y = [], []
    for row in rows:
        titles = [_title_lines(p.title, w) if p is not None else () for p in row]
        spans = [(p.key_span * (w + _GAP) - _GAP) if p is not None else w for p in row]
        labels = [
            tuple(_wrap(p.key.label, span)) if p is not None and p.key else () for p, span in zip(row, spans)
        ]
        title_h = max((_lines_height(t) for t in titles), default=0)
        title_h += 4 if title_h else 0
        below = _AXES_BELOW if any(p is not None and p.axes is not None for p in row) else 0
        line: list[_Cell | None] = []
        for j, p in enumerate(row):
            x = left + j * (left_band + w + _GAP) + left_band
            key = _Box(x, y + title_h + h + below + 6, spans[j], _BAR) if p is not None and p.key else None
            cell = _Cell(_Box(x, y + title_h, w, h), y, titles[j], key, labels[j])
            line.append(None if p is None else cell)
        cells.append(tuple(line))
        rows_y.append((y + title_h, h))
        y += title_h + h + below + _key_height([label for label in labels if label]) + _GAP
    caption_lines = tuple(_wrap(caption, width - 2 * _MARGIN)) if caption else ()
    height = y - _GAP + _MARGIN + (len(caption_lines) * _TEXT_LINE + 6 if caption_lines else 0)
    return _Layout(width, height, tuple(cells), tuple(rows_y), title_lines, caption_lines, y - _GAP + 6)


def _panel_size(rows: Rows, size: int | tuple[int, int] | None) -> tuple[int, int]:
    """Panel ``(height, width)`` in px: ``size`` (a width keeps the aspect), else the widest image's."""
    if isinstance(size, (tuple, list)):
        return as_int("size[0]", size[0], 16, 2048), as_int("size[1]", size[1], 16, 2048)
    shapes = [p.image.shape[:2] for row in rows for p in row if p is not None and p.image is not None]
    height, width = max(shapes, key=lambda s: s[1]) if shapes else (64, 64)
    if size is None:
        return height, width
    side = as_int("size", size, 16, 2048)
    return max(1, round(side * height / width)), side


def _check_rows(rows: object) -> Rows:
    if isinstance(rows, Panel):
        rows = [[rows]]
    if not isinstance(rows, Sequence) or not rows:
        raise TypeError(f"rows must be a non-empty list of rows of Panels, got {rows!r:.60}")
    rows = [[row] if isinstance(row, Panel) else row for row in rows]
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or not all(p is None or isinstance(p, Panel) for p in row):
            raise TypeError(
                f"rows[{i}] must be a list of Panels (or None for an empty cell), got {row!r:.60}"
            )
    if not any(p is not None for row in rows for p in row):
        raise ValueError("rows holds no Panel")
    return rows


def panel_figure(
    rows,
    size: int | tuple[int, int] | None = None,
    title: str = "",
    caption: str = "",
    row_labels: Sequence[str] | None = None,
) -> GridFigure:
    """A figure of panels on a grid, every panel the same size, each with its title and colour key.

    Parameters
    ----------
    rows : list of lists of Panel (or None for an empty cell), or one list of Panels
        The grid, row by row.
    size : int or (int, int), optional
        Panel width in pixels (height from the images' aspect), or ``(height, width)``; default:
        the largest image's own size.
    title : str
        Bold line(s) above the grid.
    caption : str
        Text under the grid, wrapped to the figure's width.
    row_labels : list of str, optional
        One label per row, written upwards on the left.

    Returns
    -------
    GridFigure
        At :data:`DPI` dots per inch; every panel ``size`` pixels, images drawn to it by nearest
        neighbour (area-averaged when shrunk); no text smaller than 8 pt (11 px); titles and key
        labels wrapped to their panel's width. Axes are labelled ``"panel"`` and ``"key"``.
    """
    rows = _check_rows(rows)
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"row_labels holds {len(row_labels)} labels for {len(rows)} rows")
    layout = _layout(rows, _panel_size(rows, size), title, caption, row_labels is not None)
    fig = GridFigure(figsize=(layout.width / DPI, layout.height / DPI), dpi=DPI)
    for row, cells in zip(rows, layout.cells):
        for panel, cell in zip(row, cells):
            if panel is not None and cell is not None:
                _draw_panel(fig, layout, panel, cell)
    _draw_texts(fig, layout, row_labels)
    return fig


def _frac(fig_w: int, fig_h: int, box: _Box) -> list[float]:
    return [box.x / fig_w, 1 - (box.y + box.h) / fig_h, box.w / fig_w, box.h / fig_h]


def _text(fig, x: float, y: float, layout: _Layout, text: str, **kwargs) -> None:
    """``text`` with its top-centre (or given alignment) at pixel ``(x, y)`` from the top-left."""
    kwargs = {"ha": "center", "va": "top", "fontsize": _TEXT_PT, **kwargs}
    fig.text(x / layout.width, 1 - y / layout.height, text, **kwargs)


def _draw_panel(fig, layout: _Layout, panel: Panel, cell: _Cell) -> None:
    box = cell.panel
    ax = fig.add_axes(_frac(layout.width, layout.height, box), label="panel")
    extent = panel.axes.extent if panel.axes is not None else (0, box.w, box.h, 0)
    if panel.image is not None:
        img = np.clip(np.asarray(panel.image, dtype=np.float32), 0, 1)
        shrunk = img.shape[0] > box.h or img.shape[1] > box.w  # average when shrinking, else blocks
        ax.imshow(
            img,
            cmap="gray",
            vmin=0,
            vmax=1,
            aspect="auto",
            extent=extent,
            interpolation="antialiased" if shrunk else "nearest",
        )
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    if panel.axes is not None:
        _label_axes(ax, panel.axes)
    else:
        ax.set_axis_off()
    y = cell.title_y
    for line, bold in cell.title:
        font = {"fontsize": _TITLE_PT, "fontweight": "bold"} if bold else {}
        _text(fig, box.x + box.w / 2, y, layout, line, **font)
        y += _TITLE_LINE if bold else _TEXT_LINE
    if panel.key is not None and cell.key is not None:
        _draw_key(fig, layout, panel.key, cell.key, cell.key_label)
    if panel.highlight:
        from matplotlib.patches import Rectangle

        fx, fy, fw, fh = _frac(layout.width, layout.height, _Box(box.x - 3, box.y - 3, box.w + 6, box.h + 6))
        fig.add_artist(
            Rectangle(
                (fx, fy),
                fw,
                fh,
                transform=fig.transFigure,
                fill=False,
                lw=3 * 72 / DPI,
                edgecolor=_HIGHLIGHT,
                label="highlight",
            )
        )


def _label_axes(ax, axes: PlaneAxes) -> None:
    ax.set_xticks(axes.ticks)
    ax.set_yticks(axes.ticks)
    ax.tick_params(labelsize=_TEXT_PT, length=3)
    ax.set_xlabel(axes.xlabel, fontsize=_TEXT_PT, labelpad=1)
    ax.set_ylabel(axes.ylabel, fontsize=_TEXT_PT, labelpad=1)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_key(fig, layout: _Layout, key: ColourKey, box: _Box, label: Sequence[str]) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(_frac(layout.width, layout.height, box), label="key")
    mappable = ScalarMappable(norm=Normalize(key.low, key.high), cmap=key.cmap)
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal")
    bar.set_ticks(list(key.ticks))
    bar.set_ticklabels(list(key.ticklabels))
    cax.tick_params(labelsize=_TEXT_PT, length=2, pad=1)
    labels = cax.get_xticklabels()
    if labels and key.ticks[0] == key.low:  # end labels inside the bar's width: none overlaps the next key
        labels[0].set_horizontalalignment("left")
    if len(labels) > 1 and key.ticks[-1] == key.high:
        labels[-1].set_horizontalalignment("right")
    bar.outline.set_linewidth(0.5)
    for k, line in enumerate(label):
        _text(fig, box.x + box.w / 2, box.y + _BAR + 3 + (k + 1) * _TEXT_LINE, layout, line)


def _draw_texts(fig, layout: _Layout, row_labels: Sequence[str] | None) -> None:
    for k, line in enumerate(layout.title_lines):
        _text(
            fig,
            layout.width / 2,
            _MARGIN + k * _TITLE_LINE,
            layout,
            line,
            fontsize=_TITLE_PT,
            fontweight="bold",
        )
    for k, line in enumerate(layout.caption_lines):
        _text(fig, _MARGIN, layout.caption_y + k * _TEXT_LINE, layout, line, ha="left")
    for label, (top, height) in zip(row_labels or (), layout.rows_y):
        _text(
            fig,
            _MARGIN + 2,
            top + height / 2,
            layout,
            label,
            ha="left",
            va="center",
            rotation=90,
            fontsize=_TITLE_PT,
            fontweight="bold",
        )


def figure_png(fig: Figure, dpi: float | None = None) -> bytes:
    """``fig`` as PNG bytes at its own size (``dpi``: its own), on white; the figure is cleared after."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi if dpi is not None else fig.dpi, facecolor="white")
    fig.clear()
    return buf.getvalue()


class PanelCanvas:
    """A :func:`panel_figure` drawn once without its images, into which images are pasted.

    Text, keys and frames come from matplotlib once (about 0.1 s); :meth:`png` then pastes new
    images into the panels (nearest neighbour) and encodes the picture with PIL: a few
    milliseconds, fast enough for a slider. Build one canvas per set of titles and keys.

    Parameters
    ----------
    rows, size, row_labels
        As in :func:`panel_figure`; the images in ``rows`` only fix the panel size.

    Attributes
    ----------
    boxes : list of lists of (top, left, height, width) or None
        Where each panel's image goes, in pixels.
    width, height : int
        The picture's size in pixels.
    """

    def __init__(self, rows, size: int | tuple[int, int] | None = None, row_labels=None) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        rows = _check_rows(rows)
        fixed = _panel_size(rows, size)
        blank = [[None if p is None else replace(p, image=None) for p in row] for row in rows]
        fig = panel_figure(blank, fixed, row_labels=row_labels)
        fig.set_facecolor("white")
        agg = FigureCanvasAgg(fig)
        agg.draw()
        self.background = np.asarray(agg.buffer_rgba())[..., :3].copy()
        layout = _layout(rows, fixed, "", "", row_labels is not None)
        self.height, self.width = self.background.shape[:2]
        self.boxes = [
            [None if c is None else (c.panel.y, c.panel.x, c.panel.h, c.panel.w) for c in cells]
            for cells in layout.cells
        ]

    def render(self, images) -> np.ndarray:
        """The picture (``(H, W, 3)`` uint8) with ``images[i][j]`` in panel ``(i, j)``.

        ``images`` mirrors the rows: arrays in [0, 1] (or Panels, whose image is used), None to
        leave a panel blank.
        """
        out = self.background.copy()
        for row, boxes in zip(images, self.boxes):
            for image, box in zip(row, boxes):
                image = image.image if isinstance(image, Panel) else image
                if image is not None and box is not None:
                    top, left, h, w = box
                    out[top : top + h, left : left + w] = _fit(np.asarray(image), h, w)
        return out

    def png(self, images) -> bytes:
        """:meth:`render` encoded as PNG."""
        return png_bytes(self.render(images))


def _fit(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """``image`` (``(H, W)`` or ``(H, W, 3)``, [0, 1] or uint8) as ``(h, w, 3)`` uint8.

    Enlarged by nearest neighbour (each map pixel stays a sharp block), shrunk by area averaging
    (no pixel silently dropped).
    """
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    image = image[..., :3]
    if h < image.shape[0] or w < image.shape[1]:
        from PIL import Image

        # resample=4 is Image.BOX (area averaging), named at run time only (see png_bytes)
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), resample=4))
    rows = (np.arange(h) * image.shape[0]) // h
    cols = (np.arange(w) * image.shape[1]) // w
    return image[rows[:, None], cols[None, :]]


class GridFigure(Figure):
    """A matplotlib ``Figure`` that shows itself in IPython (``_repr_png_``) without pyplot.

    Where IPython's inline backend is active, its own ``Figure`` formatter takes precedence, so
    the figure is shown once either way.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=DPI, facecolor="white")
        return buf.getvalue()


# ------------------------------------------------------------------------------------------
# maps of rules: input, one panel per rule, overlay
# ------------------------------------------------------------------------------------------

_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "signed": signed_image,
    "heatmap": heatmap,
}


def _kind_key(kind, percentile: float) -> ColourKey | None:
    if kind == "signed":
        return signed_key(percentile)
    if kind == "heatmap":
        return heat_key(percentile)
    if kind == "overlay":
        return overlay_key(percentile)
    return None


def map_panels(
    image,
    maps: Mapping[str, object],
    kind: str | Callable = "signed",
    percentile: float = PERCENTILE,
    mask=None,
    imagenet: bool = False,
    overlay: str | None = None,
    highlight: str | None = None,
    caption: str = "",
    equations: bool = False,
    titles: Mapping[str, str] | None = None,
) -> list[Panel]:
    """One row of panels: the input (``mask`` outlined on it only), one map per rule, an overlay.

    Parameters
    ----------
    image : tensor or array
        ``(3, H, W)`` input.
    maps : dict
        ``rule name -> (C, h, w)`` signal (a layer's signal is drawn at the input's size).
    kind : {"signed", "heatmap", "overlay"} or callable
        Display of each map; a callable maps one signal to an image (no colour key then).
    percentile : float, default 99
        Each map is clipped at this percentile of its ``|signal|``; its key says so.
    mask : array, optional
        ``(H, W)`` ground truth, outlined on the input panel.
    overlay : str, optional
        Add a last panel: this rule's heat map over the greyed input (:func:`overlay`).
    highlight : str, optional
        Frame this rule's panel.
    caption : str
        A line added to every title (e.g. the explained class).
    equations : bool
        Put each rule's equation under its label.
    titles : dict, optional
        Titles of some maps, replacing their rule's (e.g. a rule that is not registered).
    """
    percentile = as_real("percentile", percentile, 0, 100)
    inp = _hwc(image, imagenet)
    extra = f"\n{caption}" if caption else ""
    panels = [Panel(outline_mask(inp, mask, halo=True) if mask is not None else inp, "input" + extra)]
    for rule, signal in maps.items():
        title = (titles or {}).get(rule) or (rule_title(rule) if equations else rule_label(rule))
        title += extra
        shown = _display(kind, _numpy(signal, f"maps[{rule!r}]"), image, imagenet, percentile)
        panels.append(Panel(shown, title, _kind_key(kind, percentile), highlight=rule == highlight))
    if overlay is not None:
        over = _display("overlay", _numpy(maps[overlay], f"maps[{overlay!r}]"), image, imagenet, percentile)
        title = f"{rule_label(overlay)}\nover the greyed input" + extra
        panels.append(Panel(over, title, overlay_key(percentile)))
    return panels


def plot_maps(
    image,
    maps: Mapping[str, object],
    kind: str | Callable = "signed",
    percentile: float = PERCENTILE,
    mask=None,
    imagenet: bool = False,
    overlay: str | None = None,
    highlight: str | None = None,
    titles: Mapping[str, str] | None = None,
    size: int | None = None,
    title: str = "",
):
    """One image's maps in one row (:func:`map_panels`), as a figure (:func:`panel_figure`).

    The arguments are those of :func:`map_panels` (equations shown under the rules' labels),
    ``size`` the panel width in pixels (default: up to 3x the image, within :data:`MAX_WIDTH`)
    and ``title`` a line above the panels.
    """
    row = map_panels(image, maps, kind, percentile, mask, imagenet, overlay, highlight, "", True, titles)
    width = size if size is not None else fit_width(len(row), _hwc(image, imagenet).shape[1])
    return panel_figure([row], width, title=title)


def _display(kind, signal: np.ndarray, image, imagenet: bool, percentile: float) -> np.ndarray:
    if callable(kind):
        try:
            out = np.asarray(kind(signal), dtype=np.float32)
        except Exception as error:  # the caller's function: say which argument failed
            raise ValueError(
                f"kind raised {type(error).__name__} on a signal of shape {signal.shape}: {error}"
            ) from error
        if out.ndim not in (2, 3) or (out.ndim == 3 and out.shape[-1] not in (3, 4)):
            raise ValueError(f"kind returned shape {out.shape}; it must return an (H, W) or (H, W, 3) image")
        return out
    if kind == "overlay":
        return overlay(image, signal, imagenet=imagenet, percentile=percentile)
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from signed, heatmap, overlay")
    return _KINDS[kind](signal, percentile=percentile)


def _check_kind(kind: object) -> None:
    if callable(kind):
        try:
            inspect.signature(kind).bind(None)
        except TypeError:
            raise TypeError(
                f"kind must take one signal, kind(signal); its signature is {inspect.signature(kind)}"
            ) from None
        except ValueError:  # no signature to read
            pass
    elif not isinstance(kind, str):
        raise TypeError(
            f"kind must be 'signed', 'heatmap', 'overlay' or a function, got {type(kind).__name__}"
        )
    elif kind not in ("overlay", *_KINDS):
        raise ValueError(
            f"kind: unknown kind {kind[:40]!r}; choose from signed, heatmap, overlay, or a function"
        )


def fit_width(columns: int, image_width: int, scale: int = 3, row_labels: bool = False) -> int:
    """Panel width in px for ``columns`` panels side by side: ``image_width * scale`` (at least
    144 px), or less, so that the figure (with ``row_labels`` on its left) stays within
    :data:`MAX_WIDTH`."""
    labels = _TITLE_LINE + 4 if row_labels else 0
    room = (MAX_WIDTH - 2 * _MARGIN - labels - (columns - 1) * _GAP) // columns
    return max(48, min(max(image_width * scale, _MIN_PANEL), room))


def figure_grid(
    images,
    maps: Mapping[str, object],
    titles: Sequence[str] | None = None,
    kind: str | Callable = "signed",
    imagenet: bool = False,
    masks=None,
    size: float | None = None,
    percentile: float = PERCENTILE,
    title: str = "",
):
    """Side-by-side figure: one row per image, its input then one map per rule.

    Every panel has one size, every map a colour key stating its clipping percentile, and the
    ground truth (``masks``) is outlined on the inputs only (:func:`map_panels`, :func:`panel_figure`).

    Parameters
    ----------
    images : tensor
        ``(N, 3, H, W)`` inputs (in [0, 1], or ImageNet-normalised with ``imagenet=True``).
    maps : dict
        ``rule name -> (N, C, H, W)`` signals, e.g. the result of
        ``deconvlab.attribute(model, x, target, rules=[...])``; a registered rule's
        name is shown as its label (``"guided backprop"``).
    titles : sequence of str, optional
        One label per image (e.g. the explained class), shown in every panel of its row.
    kind : {"signed", "heatmap", "overlay"} or callable, default "signed"
        Display of each signal; a callable maps one ``(C, H, W)`` signal to an image.
    masks : tensor, optional
        ``(N, H, W)`` ground-truth masks, outlined on the inputs.
    size : float, optional
        Inches per panel (at 100 dpi); default: a whole multiple of the image size that keeps
        the figure within :data:`MAX_WIDTH` pixels.
    percentile : float, default 99
        Each map is clipped at this percentile of its ``|signal|``.
    title : str
        A bold line above the panels.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (nothing to close, no double display): save it with
        ``fig.savefig(path)``; as the last expression of a notebook cell it shows as a PNG even
        where pyplot was never imported.

    Raises
    ------
    TypeError, ValueError
        ``images`` is no ``(N, 3, H, W)`` array; ``maps`` is no dict of ``(N, C, H, W)`` signals;
        ``titles`` or ``masks`` does not hold one item per image; an unknown ``kind``; ``size`` is
        no number in ``(0, 20]``; ``imagenet`` is no bool; ``percentile`` is no number in [0, 100].
    """
    imgs = _numpy(images, "images")
    if imgs.ndim == 3:
        imgs = imgs[None]
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        raise ValueError(f"images has shape {imgs.shape}; expected (N, 3, H, W)")
    n = imgs.shape[0]
    imagenet = as_bool("imagenet", imagenet)
    if size is not None:
        size = as_real("size", size, maximum=20, above=0)
    if not isinstance(maps, Mapping):
        raise TypeError(f"maps must be a dict of rule name -> signals, got {type(maps).__name__}")
    _check_kind(kind)
    sigs = _grid_signals(maps, n)
    titles = _grid_titles(titles, n)
    masks = _grid_masks(masks, n, imgs.shape[-2:])
    rows = [
        map_panels(
            imgs[i],
            {r: sigs[r][i] for r in sigs},
            kind,
            percentile,
            None if masks is None else masks[i],
            imagenet,
            caption=titles[i] if titles is not None else "",
        )
        for i in range(n)
    ]
    width = round(size * DPI) if size is not None else fit_width(len(rows[0]), imgs.shape[-1])
    return panel_figure(rows, width, title=title)


def _grid_signals(maps: Mapping[str, object], n: int) -> dict[str, np.ndarray]:
    sigs = {}
    for r in maps:
        sig = _numpy(maps[r], f"maps[{r!r}]")
        if sig.ndim not in (3, 4) or (sig.shape[0] if sig.ndim == 4 else 1) != n:
            raise ValueError(
                f"maps[{r!r}] has shape {sig.shape}; expected (N, C, H, W) with N = {n}, one per image"
            )
        sigs[r] = sig.reshape(n, *sig.shape[-3:])
    return sigs


def _grid_titles(titles, n: int):
    if titles is not None and (isinstance(titles, str) or not isinstance(titles, Sequence)):
        raise TypeError(f"titles must be a list of {n} labels, one per image, got {titles!r:.60}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must be a list of {n} labels, one per image, got {titles!r:.60}")
    return titles


def _grid_masks(masks, n: int, shape) -> np.ndarray | None:
    if masks is None:
        return None
    masks = _numpy(masks, "masks")
    if masks.shape != (n, *shape):
        raise ValueError(f"masks has shape {masks.shape}; expected {(n, *shape)}, one per image")
    return masks


# ------------------------------------------------------------------------------------------
# the rules over the (x, p) plane
# ------------------------------------------------------------------------------------------

PLANE_CMAP = "RdBu_r"  # red > 0, white = 0, blue < 0


def plane_image(values, extent: float, scale: int = 2, point: tuple[float, float] | None = None):
    """A rule's plane (:func:`deconvlab.metrics.rule_plane`) as a picture: ``(H, W, 3)`` float.

    Red is positive, white zero, blue negative (``-extent`` to ``extent``); grey lines mark
    ``x = 0`` and ``p = 0``; each grid point is ``scale`` px; ``point=(x, p)`` is marked by a black
    dot with a white rim.
    """
    import matplotlib

    values = _numpy(values, "values")
    rgb = matplotlib.colormaps[PLANE_CMAP](0.5 + 0.5 * values / extent)[..., :3].astype(np.float32)
    rgb = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)
    centre = (values.shape[0] // 2) * scale + scale // 2
    rgb[centre, :] = rgb[:, centre] = 0.45  # the axes x = 0 and p = 0, grey
    if point is not None:
        rgb = mark_point(rgb, plane_pixel(point, extent, values.shape[0], scale), scale)
    return rgb


def plane_pixel(point: tuple[float, float], extent: float, resolution: int, scale: int) -> tuple[int, int]:
    """``(row, column)`` of the point ``(x, p)`` in a plane picture of :func:`plane_image`."""
    half = (resolution - 1) / 2
    column = round((point[0] / extent + 1) * half)
    row = round((1 - point[1] / extent) * half)
    return row * scale + scale // 2, column * scale + scale // 2


def _disc(radius: int) -> tuple[np.ndarray, np.ndarray]:
    dy, dx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


def mark_point(rgb: np.ndarray, pixel: tuple[int, int], scale: int) -> np.ndarray:
    """A copy of ``rgb`` with a black dot in a white rim at ``pixel`` (row, column)."""
    out = np.array(rgb, copy=True)
    white = 255 if out.dtype == np.uint8 else 1.0
    for (dy, dx), colour in ((_disc(max(3, 2 * scale + 1)), white), (_disc(max(2, 2 * scale - 1)), 0)):
        r, c = pixel[0] + dy, pixel[1] + dx
        keep = (r >= 0) & (r < out.shape[0]) & (c >= 0) & (c < out.shape[1])
        out[r[keep], c[keep]] = colour
    return out


def plane_key(extent: float) -> ColourKey:
    """The key of the rule planes: ``ReLU*(x, p)`` from ``-extent`` (blue) to ``extent`` (red)."""
    return ColourKey(
        PLANE_CMAP,
        -extent,
        extent,
        (-extent, 0.0, extent),
        (f"−{extent:g}", "0", f"+{extent:g}"),
        "ReLU*(x, p)",
    )


def rule_plane_panels(
    rules: Sequence = BUILTIN_NAMES,
    extent: float = 1.0,
    resolution: int = 81,
    point: tuple[float, float] | None = None,
    scale: int = 2,
) -> list[Panel]:
    """One panel per rule: ``ReLU*(x, p)`` over ``[-extent, extent]²`` with labelled axes and a key."""
    from .metrics import rule_plane

    axes = PlaneAxes(
        (-extent, extent, -extent, extent),
        "x (forward input)",
        "p (signal from above)",
        (-extent, 0.0, extent),
    )
    return [
        Panel(
            plane_image(rule_plane(rule, extent, resolution), extent, scale, point),
            rule_title(get_rule(rule).name),
            plane_key(extent),
            axes,
        )
        for rule in rules
    ]


def plot_rule_planes(
    rules: Sequence = BUILTIN_NAMES,
    extent: float = 1.0,
    resolution: int = 81,
    point: tuple[float, float] | None = None,
    scale: int = 2,
    caption: str = "",
):
    """The rules over the ``(x, p)`` plane, one panel each, with labelled axes and a colour key.

    ``point=(x, p)`` marks one point on every panel. Returns a matplotlib ``Figure``
    (:class:`GridFigure`).
    """
    return panel_figure([rule_plane_panels(rules, extent, resolution, point, scale)], caption=caption)


# ------------------------------------------------------------------------------------------
# Zeiler and Fergus' view: the images that excite a unit most, and their projections
# ------------------------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # top, bottom, left, right: half-open, in pixels


def _crop(tile: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """The ``box`` of ``tile`` enlarged (nearest neighbour) to ``size``."""
    top, bottom, left, right = box
    rows = top + (np.arange(size[0]) * (bottom - top)) // size[0]
    cols = left + (np.arange(size[1]) * (right - left)) // size[1]
    return tile[rows[:, None], cols[None, :]]


def draw_box(tile: np.ndarray, box: Box, colour: Sequence[float] = _HIGHLIGHT) -> np.ndarray:
    """A copy of the ``(H, W, 3)`` ``tile`` with the half-open ``box`` (top, bottom, left, right) outlined."""
    tile = np.array(tile, copy=True)
    top, bottom, left, right = box
    c = np.asarray(colour, np.float32)
    tile[top, left:right] = c
    tile[bottom - 1, left:right] = c
    tile[top:bottom, left] = c
    tile[top:bottom, right - 1] = c
    return tile


def _projection_tile(signal: np.ndarray, box: Box, zoom: bool, percentile: float) -> np.ndarray:
    """A projection clipped at ``percentile`` of its ``|signal|`` inside ``box`` (where it can be nonzero)."""
    top, bottom, left, right = box
    scale = _scale_of(np.abs(signal[:, top:bottom, left:right]), percentile)
    tile = signed_image(signal, scale=scale)
    return _crop(tile, box, tile.shape[:2]) if zoom else tile


def projection_panels(
    images,
    projections: Mapping[str, object],
    boxes: Sequence[Box],
    zoom: bool = True,
    percentile: float = PERCENTILE,
) -> list[list[Panel]]:
    """Zeiler and Fergus' figure as rows of panels: the images, then one row of projections per rule.

    Parameters
    ----------
    images : tensor
        ``(k, 3, H, W)`` images in [0, 1], strongest first.
    projections : dict
        ``rule -> (k, C, H, W)`` projections of each image's strongest unit.
    boxes : sequence of (top, bottom, left, right)
        Each unit's receptive field in pixels.
    zoom : bool
        Show only the receptive fields, enlarged; else the whole images with the field framed.
    percentile : float
        Each projection is clipped at this percentile of its ``|signal|`` inside the field.
    """
    imgs = _numpy(images, "images")
    sigs = {rule: _numpy(s, f"projections[{rule!r}]") for rule, s in projections.items()}
    size = imgs.shape[-2:]
    tiles = [_hwc(img) for img in imgs]
    tiles = [_crop(t, b, size) if zoom else draw_box(t, b) for t, b in zip(tiles, boxes)]
    rows = [[Panel(t) for t in tiles]]
    key = signed_key(percentile, of="|signal| in the field")
    for sig in sigs.values():
        row = [Panel(_projection_tile(s, b, zoom, percentile)) for s, b in zip(sig, boxes)]
        rows.append([replace(row[0], key=key, key_span=min(3, len(row))), *row[1:]])
    return rows


def plot_projections(
    images,
    projections: Mapping[str, object],
    boxes: Sequence[Box],
    zoom: bool = True,
    percentile: float = PERCENTILE,
    size: int | None = None,
    title: str = "",
):
    """:func:`projection_panels` as a figure, rows labelled (the images, then each rule)."""
    rows = projection_panels(images, projections, boxes, zoom, percentile)
    labels = [f"top {len(rows[0])}", *(rule_label(rule) for rule in projections)]
    width = size if size is not None else fit_width(len(rows[0]), _numpy(images, "images").shape[-1], 3, True)
    return panel_figure(rows, width, title=title, row_labels=labels)
