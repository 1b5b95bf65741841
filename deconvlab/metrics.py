r"""Measurements on maps, masks and images: pure functions, no models, no widgets.

A *map* is a backpropagated signal shaped like the input, ``(N, C, H, W)`` (or one
``(C, H, W)``); a *mask* is ``(N, H, W)`` boolean; an *image* is ``(N, C, H, W)``.
Tensors and arrays are both accepted. Every sanity check (:mod:`deconvlab.sanity`),
notebook and widget measures maps with these functions and no others.

Every function checks its arguments first: ``TypeError`` for something that is no array of
numbers (or no number), ``ValueError`` for a wrong shape, mismatched shapes or a value out of
range, each message naming the parameter (:mod:`deconvlab.checks`).

* Display normalisations of Adebayo et al. [ADEBAYO]_: :func:`abs_normalise`,
  :func:`diverging_normalise`.
* Similarity of two maps: :func:`spearman`, :func:`pearson`, :func:`ssim`,
  :func:`relative_difference`, :func:`changed_fraction`.
* Likeness of a map to its image [NIE]_: :func:`image_correlation`, :func:`edge_correlation`
  (with :func:`edge_map`).
* Where a map's energy lies: :func:`pixel_energy`, :func:`mask_energy_fraction`,
  :func:`energy_concentration`.
* The pointing game [ZHANG]_: :func:`saliency_points`, :func:`pointing_hits`.
* A rule itself, over the ``(x, p)`` plane: :func:`relu_star`, :func:`rule_plane`.

**Energy.** Everywhere in deconvlab the energy of a map at a pixel is
:math:`\sum_c s_c^2`, the squared Euclidean norm of the signal's channel vector: the
signal-processing definition of energy (the sum of squared magnitudes), which
does not depend on the colour basis (any orthogonal change of channels keeps it).
:func:`mask_energy_fraction` is the share of it on an object, the "energy-based
pointing game" of Wang et al. [SCORECAM]_ applied to that per-pixel energy.

References
----------
.. [ADEBAYO] Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, *Sanity Checks for
   Saliency Maps*, NeurIPS 2018, https://arxiv.org/abs/1810.03292.
.. [NIE] Nie, Zhang and Patel, *A Theoretical Explanation for Perplexing Behaviors of
   Backpropagation-based Visualizations*, ICML 2018, https://arxiv.org/abs/1805.07039.
.. [ZHANG] Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, *Top-down Neural Attention by
   Excitation Backprop*, ECCV 2016; TorchRay's benchmark, https://github.com/facebookresearch/TorchRay.
.. [SCORECAM] Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu, *Score-CAM*, CVPR
   Workshops 2020 (the energy-based pointing game), https://arxiv.org/abs/1910.01279.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import as_array, as_int, as_real
from .rules import RuleLike, get_rule

# SciPy and scikit-image are imported inside the functions that use them: importing the
# widgets (which measure energy) then stays fast.

__all__ = [
    "abs_normalise",
    "changed_fraction",
    "diverging_normalise",
    "edge_correlation",
    "edge_map",
    "energy_concentration",
    "image_correlation",
    "mask_energy_fraction",
    "pearson",
    "pixel_energy",
    "pointing_hits",
    "relative_difference",
    "relu_star",
    "rule_plane",
    "saliency_points",
    "spearman",
    "ssim",
]

_MAPS = {3: "(C, H, W)", 4: "(N, C, H, W)"}
_PLANES = {2: "(H, W)", 3: "(N, H, W)"}


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


def _array(
    name: str, value: object, layouts: dict[int, str] | None = None, kinds: str = "biuf"
) -> np.ndarray:
    """``value`` checked (:func:`deconvlab.checks.as_array`) and as a NumPy array."""
    return _numpy(as_array(name, value, layouts, kinds))


def _same_shape(names: tuple[str, str], a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{names[0]} and {names[1]} have different shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )


def _batch(x: Tensor) -> Tensor:
    """``(C, H, W)`` as ``(1, C, H, W)``; a batch unchanged."""
    return x if x.dim() == 4 else x[None]


def _flat_pairs(a: np.ndarray, b: np.ndarray, trailing: int) -> tuple[np.ndarray, np.ndarray]:
    """``a`` and ``b`` as ``(N, D)``, flattening their last ``trailing`` axes; shapes must agree."""
    a, b = np.asarray(a), np.asarray(b)
    _same_shape(("a", "b"), a, b)
    size = int(np.prod(a.shape[-trailing:]))
    return a.reshape(-1, size), b.reshape(-1, size)


def _correlate(statistic, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``statistic(u, v)`` of each pair of rows; ``nan`` where a row is constant."""
    out = np.full(len(a), np.nan)
    for i, (u, v) in enumerate(zip(a, b)):
        if np.ptp(u) > 0 and np.ptp(v) > 0:
            out[i] = statistic(u, v).statistic
    return out


# -- display normalisations (Adebayo et al.) --------------------------------------------------


def abs_normalise(maps: Tensor | np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Absolute-value normalised maps, as in Adebayo et al. [ADEBAYO]_.

    The channels' absolute values are summed, then divided by the map's
    ``percentile``-th percentile and clipped to ``[0, 1]`` (PAIR ``saliency``'s
    ``VisualizeImageGrayscale``, which the authors' code uses for colour images).

    Parameters
    ----------
    maps : Tensor or ndarray
        ``(C, H, W)`` or ``(N, C, H, W)`` signed maps.
    percentile : float, default 99
        The value mapped to 1.

    Returns
    -------
    ndarray
        ``(H, W)`` or ``(N, H, W)`` in ``[0, 1]`` (a zero map stays zero).

    Raises
    ------
    TypeError, ValueError
        ``maps`` is no ``(C, H, W)`` or ``(N, C, H, W)`` array of numbers; ``percentile`` is no
        number in ``[0, 100]``.
    """
    percentile = as_real("percentile", percentile, 0, 100)
    a = np.abs(_array("maps", maps, _MAPS)).sum(axis=-3)
    flat = a.reshape(-1, a.shape[-2] * a.shape[-1])
    low = flat.min(axis=1)
    high = np.percentile(flat, percentile, axis=1)
    span = np.where(high > low, high - low, 1.0)
    out = (flat - low[:, None]) / span[:, None]
    return np.clip(out, 0.0, 1.0).reshape(a.shape)


def diverging_normalise(maps: Tensor | np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Signed normalised maps: channels summed, divided by a percentile of ``|map|``, clipped to [-1, 1].

    PAIR ``saliency``'s ``VisualizeImageDiverging``, which Adebayo et al. use for the
    signed comparison [ADEBAYO]_. Shapes and errors as in :func:`abs_normalise`.
    """
    percentile = as_real("percentile", percentile, 0, 100)
    s = _array("maps", maps, _MAPS).astype(np.float64).sum(axis=-3)
    flat = s.reshape(-1, s.shape[-2] * s.shape[-1])
    span = np.percentile(np.abs(flat), percentile, axis=1)
    span = np.where(span > 0, span, 1.0)
    return np.clip(flat / span[:, None], -1.0, 1.0).reshape(s.shape)


# -- similarity of two maps -------------------------------------------------------------------


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps, :func:`scipy.stats.spearmanr` [ADEBAYO]_.

    Parameters
    ----------
    a, b : ndarray
        ``(N, H, W)`` (or ``(H, W)``) maps of equal shape.

    Returns
    -------
    ndarray
        ``(N,)`` correlations; ``nan`` where a map is constant (no ranking exists).

    Raises
    ------
    TypeError, ValueError
        ``a`` or ``b`` is no ``(H, W)`` or ``(N, H, W)`` array of numbers; they differ in shape.
    """
    from scipy.stats import spearmanr

    return _correlate(spearmanr, *_flat_pairs(_array("a", a, _PLANES), _array("b", b, _PLANES), 2))


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of flattened items, :func:`scipy.stats.pearsonr`.

    Parameters
    ----------
    a, b : ndarray
        ``(N, ...)`` of equal shape; item ``i`` of ``a`` is compared with item ``i`` of ``b``.

    Returns
    -------
    ndarray
        ``(N,)`` correlations; ``nan`` where an item is constant.

    Raises
    ------
    TypeError, ValueError
        ``a`` or ``b`` is no array of numbers with at least two dimensions ``(N, ...)``; they
        differ in shape.
    """
    from scipy.stats import pearsonr

    a, b = _array("a", a), _array("b", b)
    for name, value in (("a", a), ("b", b)):
        if value.ndim < 2:
            raise ValueError(f"{name} has shape {value.shape}; expected (N, ...): one item per row")
    return _correlate(pearsonr, *_flat_pairs(a, b, a.ndim - 1))


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair of ``(N, H, W)`` maps in ``[0, 1]`` (Wang et al., IEEE TIP 2004) [ADEBAYO]_.

    :func:`skimage.metrics.structural_similarity` with ``data_range=1``; one ``(H, W)`` pair
    gives one value. ``TypeError`` or ``ValueError`` for arrays that are not such maps, differ in
    shape or are smaller than SSIM's 7x7 window.
    """
    from skimage.metrics import structural_similarity

    a, b = _array("a", a, _PLANES).astype(np.float64), _array("b", b, _PLANES).astype(np.float64)
    _same_shape(("a", "b"), a, b)
    if min(a.shape[-2:]) < 7:
        raise ValueError(f"a and b have shape {a.shape}; SSIM needs maps of at least 7 x 7 pixels")
    a, b = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
    return np.array([structural_similarity(u, v, data_range=1.0) for u, v in zip(a, b)])


def _tensor_pair(a: object, b: object) -> tuple[Tensor, Tensor]:
    ta, tb = (
        value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
        for value in (as_array("a", a), as_array("b", b))
    )
    _same_shape(("a", "b"), ta, tb)
    return (ta if ta.is_floating_point() else ta.double()), (tb if tb.is_floating_point() else tb.double())


def relative_difference(a: Tensor, b: Tensor) -> float:
    """Largest ``|a - b|`` divided by the largest ``|a|`` (by 1 when ``a`` is zero).

    ``TypeError`` or ``ValueError`` if ``a`` and ``b`` are no arrays of numbers of one shape.
    """
    a, b = _tensor_pair(a, b)
    scale = float(a.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


def changed_fraction(a: Tensor, b: Tensor, tolerance: float = 1e-3) -> float:
    """Fraction of entries where ``|a - b|`` exceeds ``tolerance`` times the largest ``|a|``.

    ``TypeError`` or ``ValueError`` if ``a`` and ``b`` are no arrays of numbers of one shape, or
    ``tolerance`` is no number ``>= 0``.
    """
    tolerance = as_real("tolerance", tolerance, minimum=0)
    a, b = _tensor_pair(a, b)
    return float(((a - b).abs() > tolerance * a.abs().max()).double().mean())


# -- likeness of a map to its image (Nie et al.) ----------------------------------------------


def image_correlation(maps: Tensor | np.ndarray, images: Tensor | np.ndarray) -> np.ndarray:
    """``(N,)`` Pearson correlation of each signed map with its image [NIE]_.

    Each colour channel of the image is centred on its mean; the correlation runs over
    all channels and pixels. Near 1: the map reproduces the image. ``maps`` and ``images`` are
    ``(N, C, H, W)`` (or one ``(C, H, W)``) of one shape, else ``TypeError`` or ``ValueError``.
    """
    m, x = _array("maps", maps, _MAPS), _array("images", images, _MAPS).astype(np.float64)
    if m.shape != x.shape:
        raise ValueError(f"maps has shape {m.shape} but images has shape {x.shape}; they must match")
    if m.ndim == 3:
        m, x = m[None], x[None]
    return pearson(m, x - x.mean(axis=(-2, -1), keepdims=True))


def edge_map(images: Tensor | np.ndarray) -> np.ndarray:
    """``(N, H, W)`` gradient magnitude (Sobel) of each image's channel mean: where its edges are.

    ``images`` is ``(N, C, H, W)`` or ``(C, H, W)``, else ``TypeError`` or ``ValueError``.
    """
    from scipy import ndimage

    x = _array("images", images, _MAPS).astype(np.float64)
    gray = x.mean(axis=-3).reshape(-1, *x.shape[-2:])
    # one image at a time: a Sobel filter on a stack would also smooth across the images
    return np.stack([np.hypot(ndimage.sobel(g, axis=0), ndimage.sobel(g, axis=1)) for g in gray])


def edge_correlation(maps: Tensor | np.ndarray, images: Tensor | np.ndarray) -> np.ndarray:
    """``(N,)`` Pearson correlation of ``|map|`` summed over channels with :func:`edge_map` [NIE]_.

    ``maps`` and ``images`` are ``(N, C, H, W)`` (or one ``(C, H, W)``) with the same number of
    examples and pixels, else ``TypeError`` or ``ValueError``.
    """
    m, x = _array("maps", maps, _MAPS), _array("images", images, _MAPS)
    if m.ndim != x.ndim or m.shape[:-3] != x.shape[:-3] or m.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"maps has shape {m.shape} but images has shape {x.shape}; they need the same N, H and W"
        )
    return pearson(np.abs(m).sum(axis=-3).reshape(-1, *m.shape[-2:]), edge_map(x))


# -- where the energy lies ---------------------------------------------------------------------


def pixel_energy(maps: Tensor | np.ndarray, size: Sequence[int] | None = None) -> Tensor:
    """``(N, H, W)`` energy of each pixel, ``sum_c s²``: the one definition deconvlab uses.

    Parameters
    ----------
    maps : Tensor or ndarray
        ``(N, C, h, w)`` (or ``(C, h, w)``).
    size : (H, W), optional
        Enlarge (nearest neighbour) to this size, e.g. a layer's map to its image's mask.

    Raises
    ------
    TypeError, ValueError
        ``maps`` is no ``(C, h, w)`` or ``(N, C, h, w)`` array of numbers; ``size`` is no pair of
        positive integers (at most 16384).
    """
    if size is not None:
        if isinstance(size, (np.ndarray, Tensor)) and size.ndim == 1:
            size = size.tolist()
        if not isinstance(size, (tuple, list, torch.Size)) or len(size) != 2:
            raise TypeError(f"size must be a pair of ints (H, W), got {size!r:.60}")
        size = (as_int("size[0]", size[0], 1, 16384), as_int("size[1]", size[1], 1, 16384))
    checked = torch.as_tensor(as_array("maps", maps, _MAPS))
    energy = _batch(checked).detach().float().pow(2).sum(1, keepdim=True)
    if size is not None and tuple(energy.shape[-2:]) != tuple(size):
        energy = F.interpolate(energy, size=tuple(size), mode="nearest")
    return energy[:, 0]


def _share(part: Tensor, total: Tensor) -> Tensor:
    return torch.where(total > 0, part / total.clamp_min(1e-30), torch.zeros_like(total))


def mask_energy_fraction(maps: Tensor | np.ndarray, masks: Tensor | np.ndarray) -> Tensor:
    """Fraction of each map's energy (:func:`pixel_energy`) that falls on its mask [SCORECAM]_.

    Parameters
    ----------
    maps : Tensor or ndarray
        ``(N, C, h, w)`` (or ``(C, h, w)``); a layer's smaller map is enlarged to the
        mask (nearest neighbour) first.
    masks : Tensor or ndarray
        ``(N, H, W)`` (or ``(H, W)``) boolean.

    Returns
    -------
    Tensor
        ``(N,)`` in [0, 1] (0 for an all-zero map). A map that ignores the object scores
        about the mask's area fraction.

    Raises
    ------
    TypeError, ValueError
        ``maps`` or ``masks`` is no array of the shapes above; their numbers of examples differ.
    """
    masks = torch.as_tensor(as_array("masks", masks, _PLANES))
    masks = masks if masks.dim() == 3 else masks[None]
    maps = as_array("maps", maps, _MAPS)
    count = maps.shape[0] if maps.ndim == 4 else 1
    if count != masks.shape[0]:
        raise ValueError(
            f"masks holds {masks.shape[0]} masks but maps holds {count} maps; give one mask per map"
        )
    energy = pixel_energy(maps, masks.shape[-2:])
    return _share((energy * masks).flatten(1).sum(1), energy.flatten(1).sum(1))


def energy_concentration(maps: Tensor | np.ndarray, top: float = 0.05) -> Tensor:
    """Share of each map's energy (:func:`pixel_energy`) held by its brightest ``top`` of pixels.

    A map whose energy is spread thinly over the image (the noisy look of the plain
    gradient) scores low; a sparse map that lights up a few edges scores close to 1;
    equal-energy pixels score ``top``.

    Parameters
    ----------
    maps : Tensor or ndarray
        ``(N, C, H, W)`` (or ``(C, H, W)``).
    top : float, default 0.05
        Fraction of pixels counted (at least one pixel).

    Returns
    -------
    Tensor
        ``(N,)`` in [0, 1] (0 for an all-zero map).

    Raises
    ------
    TypeError, ValueError
        ``maps`` as in :func:`pixel_energy`; ``top`` is no number in ``(0, 1]``.
    """
    top = as_real("top", top, maximum=1, above=0)
    energy = pixel_energy(maps).flatten(1)
    k = max(1, round(top * energy.shape[1]))
    return _share(energy.topk(k, dim=1).values.sum(1), energy.sum(1))


# -- the pointing game (Zhang et al.; TorchRay) ------------------------------------------------


def saliency_points(maps: Tensor | np.ndarray, smooth: float = 0.02) -> np.ndarray:
    """``(N, 2)`` (row, column) of each map's maximum, as TorchRay's pointing benchmark [ZHANG]_.

    The map is reduced to ``max`` over channels of ``|map|`` (TorchRay's
    ``gradient_to_saliency``), blurred by a Gaussian of standard deviation
    ``smooth × max(H, W)`` pixels (TorchRay uses ``smooth=0.02``), and its arg-max taken.
    ``maps`` is ``(N, C, H, W)`` (or one ``(C, H, W)``) and ``smooth`` a number in ``[0, 1]``,
    else ``TypeError`` or ``ValueError``.
    """
    from scipy import ndimage

    smooth = as_real("smooth", smooth, 0, 1)
    m = _array("maps", maps, _MAPS).astype(np.float64)
    s = np.abs(m if m.ndim == 4 else m[None]).max(axis=1)
    sigma = smooth * max(s.shape[-2:])
    if sigma > 0:
        s = ndimage.gaussian_filter(s, sigma=(0, sigma, sigma), mode="constant")
    flat = s.reshape(len(s), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, s.shape[-2:]), axis=1)


def pointing_hits(points: np.ndarray, masks: np.ndarray, tolerance: float) -> np.ndarray:
    """``(N,)`` bool: a pixel of mask ``i`` lies strictly closer than ``tolerance`` to point ``i`` [ZHANG]_.

    TorchRay's acceptance test; ``points`` is ``(N, 2)`` (row, column), ``masks`` ``(N, H, W)``,
    ``tolerance`` a number ``>= 0``; else ``TypeError`` or ``ValueError``.
    """
    tolerance = as_real("tolerance", tolerance, minimum=0, maximum=1e6)
    points = _array("points", points, {2: "(N, 2)"}, kinds="iuf")
    masks = _array("masks", masks, {3: "(N, H, W)"}).astype(bool)
    if points.shape[1] != 2:
        raise ValueError(f"points has shape {points.shape}; expected (N, 2): a row and a column per map")
    if len(points) != len(masks):
        raise ValueError(f"points holds {len(points)} points but masks holds {len(masks)} masks")
    h, w = masks.shape[-2:]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.empty(len(points), bool)
    for i, (r, c) in enumerate(points):
        accept = (rows - r) ** 2 + (cols - c) ** 2 < tolerance**2
        out[i] = bool((masks[i] & accept).any())
    return out


def relu_star(rule: RuleLike, x: float, p: float) -> float:
    """``ReLU*(x, p)`` of ``rule`` at one point, by the rule's own function.

    ``TypeError`` or ``ValueError`` for an unknown ``rule`` or an ``x`` or ``p`` that is no finite number.
    """
    x, p = as_real("x", x), as_real("p", p)
    return float(get_rule(rule).backward(torch.tensor(x), torch.tensor(p)))


def rule_plane(rule: RuleLike, extent: float = 1.0, resolution: int = 81) -> np.ndarray:
    """``ReLU*(x, p)`` of ``rule`` on a grid of ``resolution`` points per side over ``[-extent, extent]``.

    Returns an array indexed ``[row, column]``: columns run over ``x`` from
    ``-extent`` to ``extent`` (left to right), rows over ``p`` from ``+extent``
    down to ``-extent`` (top to bottom), as in a plot with ``p`` upwards.
    ``resolution`` must be odd, so that ``x = 0`` and ``p = 0`` lie on the grid.

    Raises
    ------
    TypeError, ValueError
        An unknown ``rule``; ``extent`` is no number ``> 0``; ``resolution`` is no odd integer
        from 3 to 2001.
    """
    extent = as_real("extent", extent, above=0)
    resolution = as_int("resolution", resolution, maximum=2001)
    if resolution % 2 == 0 or resolution < 3:
        raise ValueError(
            f"resolution must be odd (and at least 3) so that x = 0 and p = 0 are on the grid, "
            f"got {resolution}"
        )
    half = (resolution - 1) // 2
    axis = torch.arange(-half, half + 1) * (extent / half)  # exactly 0 in the middle
    p, x = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    return get_rule(rule).backward(x, p).numpy().astype(np.float32)
