"""Turning backpropagated signals into pictures.

The three standard displays:

* :func:`signed_image` -- the signed signal, scaled by its largest magnitude and centred on grey,
  as in the figures of Zeiler & Fergus (ECCV 2014) and Springenberg et al. (ICLR-W 2015):
  grey is zero, bright is positive, dark is negative, and colour is kept.
* :func:`heatmap` -- the "saliency map" of Simonyan et al. (ICLR-W 2014, §3.1): the maximum of
  ``|signal|`` over colour channels, scaled to [0, 1], through a colour map.
* :func:`overlay` -- a heat map laid over the input image.

:func:`figure_grid` draws the rules x images comparison with matplotlib (used by the command line
and the notebooks); :func:`png_bytes` encodes an array as PNG with PIL only, fast enough for a
slider callback (``ipywidgets.Image``). Arrays come back as NumPy ``float32`` in [0, 1],
``(H, W, 3)`` for colour and ``(H, W)`` for grey.

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
from typing import Callable

import numpy as np
import torch
from matplotlib.figure import Figure

from .checks import as_array, as_bool, as_choice, as_int, as_real
from .rules import get_rule

__all__ = [
    "GridFigure",
    "as_image",
    "figure_grid",
    "heatmap",
    "outline_mask",
    "overlay",
    "png_bytes",
    "rule_heading",
    "rule_label",
    "saliency",
    "signed_image",
]


def rule_label(key: str) -> str:
    """How a map keyed ``key`` is titled: a registered rule's label (``"guided backprop"``), else ``key``."""
    try:
        return get_rule(key).label
    except (TypeError, ValueError):
        return key if isinstance(key, str) else str(key)


def rule_heading(key: str) -> str:
    """HTML heading of a rule's panel: its label in bold, then its equation."""
    try:
        rule = get_rule(key)
    except (TypeError, ValueError):
        return f"<b>{html.escape(str(key))}</b>"
    return f"<b>{html.escape(rule.label)}</b> {html.escape(rule.equation)}"


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


def signed_image(signal, percentile: float = 100.0) -> np.ndarray:
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

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` or ``(H, W)`` float32 in [0, 1].

    Raises
    ------
    TypeError, ValueError
        ``signal`` is no such array of numbers; ``percentile`` is no number in ``[0, 100]``.

    Notes
    -----
    Non-finite values (NaN, ±inf) are drawn as 0, i.e. mid-grey, and left out of the scale, so
    that the rest of the picture stays visible; a ``RuntimeWarning`` says how many there are.
    """
    percentile = as_real("percentile", percentile, 0, 100)
    s = _finite(_chw(signal))
    if s.shape[0] != 3:
        s = s.sum(0, keepdims=True)
    a = np.abs(s)
    scale = a.max() if percentile >= 100 else np.percentile(a, percentile)
    out = 0.5 + 0.5 * s / scale if scale > 0 else np.full_like(s, 0.5)
    out = np.clip(out, 0.0, 1.0, out=out)
    return out[0] if out.shape[0] == 1 else np.ascontiguousarray(out.transpose(1, 2, 0))


def saliency(signal) -> np.ndarray:
    """``max_c |signal|`` scaled to [0, 1]: Simonyan et al.'s saliency map, ``(H, W)``.

    Non-finite values (NaN, ±inf) count as 0 and are left out of the scale (with a warning).
    ``TypeError`` or ``ValueError`` if ``signal`` is no ``(C, H, W)`` array of numbers.
    """
    s = np.abs(_finite(_chw(signal))).max(0)
    m = s.max()
    return s / m if m > 0 else s


def _colormap(values: np.ndarray, cmap: str) -> np.ndarray:
    import matplotlib

    return matplotlib.colormaps[cmap](values, bytes=False)[..., :3].astype(np.float32)


def heatmap(signal, cmap: str | None = "inferno") -> np.ndarray:
    """Channel-max ``|signal|`` heat map (Simonyan et al., ICLR-W 2014).

    Parameters
    ----------
    signal : tensor or array
        ``(C, H, W)`` signal (any number of channels, e.g. a layer's).
    cmap : str or None, default "inferno"
        matplotlib colour map; ``None`` returns the grey ``(H, W)`` map.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` (or ``(H, W)``) float32 in [0, 1].

    Raises
    ------
    TypeError, ValueError
        ``signal`` as in :func:`saliency`; ``cmap`` is no colour map name (nor None).
    """
    cmap = None if cmap is None else _cmap(cmap)
    s = saliency(signal)
    return s if cmap is None else _colormap(s, cmap)


def overlay(image, signal, alpha: float = 0.6, cmap: str = "inferno", imagenet: bool = False):
    """A heat map laid over an image, more opaque where the map is stronger.

    ``out = image * (1 - alpha * h) + alpha * h * cmap(h)`` with ``h`` the heat map in [0, 1].

    Parameters
    ----------
    image : tensor or array
        ``(3, H, W)`` input, in [0, 1] (or ImageNet-normalised with ``imagenet=True``), or an
        ``(H, W, 3)`` array in [0, 1].
    signal : tensor or array
        A ``(C, H, W)`` signal, or an ``(H, W)`` heat map already in [0, 1]. A map of another
        size (e.g. a layer's) is resized bilinearly to the image.
    alpha : float, default 0.6
        Opacity of the strongest part of the map.

    Raises
    ------
    TypeError, ValueError
        ``image`` or ``signal`` is no such array of numbers; ``alpha`` is no number in ``[0, 1]``;
        ``cmap`` is no colour map name; ``imagenet`` is no bool.
    """
    alpha, cmap = as_real("alpha", alpha, 0, 1), _cmap(cmap)
    img = _hwc(image, imagenet)
    h = _numpy(signal)
    h = saliency(h) if h.ndim != 2 else np.clip(_finite(h), 0, 1)
    if h.shape != img.shape[:2]:
        h = _resize(h, img.shape[:2])
    w = (alpha * h)[..., None]
    return img * (1 - w) + w * _colormap(h, cmap)


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
) -> np.ndarray:
    """Draw the contour of a ground-truth ``mask`` (``(H, W)`` bool) on ``image``; ``(H, W, 3)``.

    ``mode="inner"`` colours the mask's own border pixels, ``"outer"`` the ring just outside it
    (leaving the object intact), ``"thick"`` both; see :func:`skimage.segmentation.find_boundaries`.
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


_KINDS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "signed": signed_image,
    "heatmap": heatmap,
}


def figure_grid(
    images,
    maps: Mapping[str, object],
    titles: Sequence[str] | None = None,
    kind: str | Callable = "signed",
    imagenet: bool = False,
    masks=None,
    size: float = 2.2,
):
    """Side-by-side figure: one row per image, its input then one map per rule.

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
    size : float
        Inches per panel.

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
        no number in ``(0, 20]``; ``imagenet`` is no bool.
    """
    imgs = _numpy(images, "images")
    if imgs.ndim == 3:
        imgs = imgs[None]
    if imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        raise ValueError(f"images has shape {imgs.shape}; expected (N, 3, H, W)")
    n = imgs.shape[0]
    imagenet, size = as_bool("imagenet", imagenet), as_real("size", size, maximum=20, above=0)
    if not isinstance(maps, Mapping):
        raise TypeError(f"maps must be a dict of rule name -> signals, got {type(maps).__name__}")
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
    rules = list(maps)
    sigs = {}
    for r in rules:
        sig = _numpy(maps[r], f"maps[{r!r}]")
        if sig.ndim not in (3, 4) or (sig.shape[0] if sig.ndim == 4 else 1) != n:
            raise ValueError(
                f"maps[{r!r}] has shape {sig.shape}; expected (N, C, H, W) with N = {n}, one per image"
            )
        sigs[r] = sig.reshape(n, *sig.shape[-3:])
    if titles is not None and (isinstance(titles, str) or not isinstance(titles, Sequence)):
        raise TypeError(f"titles must be a list of {n} labels, one per image, got {titles!r:.60}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must be a list of {n} labels, one per image, got {titles!r:.60}")
    if masks is not None:
        masks = _numpy(masks, "masks")
        if masks.shape != (n, *imgs.shape[-2:]):
            raise ValueError(
                f"masks has shape {masks.shape}; expected {(n, *imgs.shape[-2:])}, one per image"
            )
    fig = GridFigure(figsize=(size * (1 + len(rules)), size * n + 0.2), layout="constrained")
    axes = fig.subplots(n, 1 + len(rules), squeeze=False)
    for i in range(n):
        inp = _hwc(imgs[i], imagenet)
        if masks is not None:
            inp = outline_mask(inp, masks[i])
        label = f"\n{titles[i]}" if titles is not None else ""
        _show(axes[i, 0], inp, "input" + label)
        for j, rule in enumerate(rules):
            _show(axes[i, j + 1], _display(kind, sigs[rule][i], imgs[i], imagenet), rule_label(rule) + label)
    return fig


class GridFigure(Figure):
    """A matplotlib ``Figure`` that shows itself in IPython (``_repr_png_``) without pyplot.

    Where IPython's inline backend is active, its own ``Figure`` formatter takes precedence, so
    the figure is shown once either way.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=100)
        return buf.getvalue()


def _display(kind, signal: np.ndarray, image: np.ndarray, imagenet: bool) -> np.ndarray:
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
        return overlay(image, signal, imagenet=imagenet)
    if kind not in _KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from signed, heatmap, overlay")
    return _KINDS[kind](signal)


def _show(ax, img: np.ndarray, title: str) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
