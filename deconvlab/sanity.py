r"""Sanity checks: do gradient, DeConvNet and guided-backprop maps explain the model?

The three methods differ only in the backward of ReLU (``x`` the forward input,
``p`` the signal from above): gradient ``p · [x > 0]``, DeConvNet ``p · [p > 0]``,
guided backprop ``p · [x > 0] · [p > 0]``. This module measures what that one
difference does, with the published experiments:

* :func:`class_sensitivity`: on two-object images, the map for class A against the
  map for class B [NIE]_;
* :func:`cascading_randomisation`: re-initialise the layers from the logits down and
  compare each map with the trained model's [ADEBAYO]_;
* :func:`image_recovery`: maps of an *untrained* network against the input [NIE]_;
* :func:`input_shift`: a constant shift of the input compensated by the first layer's
  bias [KINDERMANS]_;
* :func:`pointing_game`: does the map's maximum land on the object [ZHANG]_, with
  TorchRay's protocol and the centre baseline;
* :func:`reference_table`: the published numbers shipped in ``deconvlab/reference/``.

Statistics come from SciPy (:func:`scipy.stats.spearmanr`, :func:`scipy.stats.pearsonr`)
and scikit-image (:func:`skimage.metrics.structural_similarity`).

References
----------
.. [ADEBAYO] Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, *Sanity Checks for
   Saliency Maps*, NeurIPS 2018, https://arxiv.org/abs/1810.03292 (v3 carries the
   guided-backprop erratum).
.. [NIE] Nie, Zhang and Patel, *A Theoretical Explanation for Perplexing Behaviors of
   Backpropagation-based Visualizations*, ICML 2018, https://arxiv.org/abs/1805.07039.
.. [KINDERMANS] Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan and Kim,
   *The (Un)reliability of Saliency Methods*, 2017, https://arxiv.org/abs/1711.00867.
.. [ZHANG] Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, *Top-down Neural Attention by
   Excitation Backprop*, ECCV 2016 (the pointing game); TorchRay's benchmark,
   https://github.com/facebookresearch/TorchRay.
"""

from __future__ import annotations

import copy
import csv
import html
import importlib.resources
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage, stats
from skimage.metrics import structural_similarity
from torch import Tensor, nn

from .attribution import attribute
from .models import init_weights

__all__ = [
    "RULES",
    "CascadeResult",
    "ClassSensitivityResult",
    "PointingResult",
    "ReferenceTable",
    "ShiftResult",
    "ShiftedInputConv2d",
    "abs_normalise",
    "cascading_randomisation",
    "class_sensitivity",
    "diverging_normalise",
    "edge_map",
    "html_table",
    "image_recovery",
    "input_shift",
    "plot_cascade",
    "plot_class_sensitivity",
    "pointing_game",
    "randomisation_order",
    "reference_table",
    "reinitialise_",
    "saliency_points",
    "shift_compensated",
    "spearman",
]

#: The three rules, in the order every result lists them.
RULES: tuple[str, ...] = ("gradient", "deconvnet", "guided_backprop")


# --------------------------------------------------------------------------------------------
# normalisation and statistics (Adebayo et al.'s protocol)
# --------------------------------------------------------------------------------------------


def _numpy(maps: Tensor | np.ndarray) -> np.ndarray:
    return maps.detach().cpu().numpy() if isinstance(maps, Tensor) else np.asarray(maps)


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
    """
    a = np.abs(_numpy(maps)).sum(axis=-3)
    flat = a.reshape(-1, a.shape[-2] * a.shape[-1])
    low = flat.min(axis=1)
    high = np.percentile(flat, percentile, axis=1)
    span = np.where(high > low, high - low, 1.0)
    out = (flat - low[:, None]) / span[:, None]
    return np.clip(out, 0.0, 1.0).reshape(a.shape)


def diverging_normalise(maps: Tensor | np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Signed normalised maps: channels summed, divided by a percentile of ``|map|``, clipped to [-1, 1].

    PAIR ``saliency``'s ``VisualizeImageDiverging``, which Adebayo et al. use for the
    signed comparison [ADEBAYO]_. Shapes as in :func:`abs_normalise`.
    """
    s = _numpy(maps).sum(axis=-3)
    flat = s.reshape(-1, s.shape[-2] * s.shape[-1])
    span = np.percentile(np.abs(flat), percentile, axis=1)
    span = np.where(span > 0, span, 1.0)
    return np.clip(flat / span[:, None], -1.0, 1.0).reshape(s.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps, :func:`scipy.stats.spearmanr`.

    Parameters
    ----------
    a, b : ndarray
        ``(N, H, W)`` (or ``(H, W)``) maps of equal shape.

    Returns
    -------
    ndarray
        ``(N,)`` correlations; ``nan`` where a map is constant (no ranking exists).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps have different shapes {a.shape} and {b.shape}")
    a2 = a.reshape(-1, a.shape[-2] * a.shape[-1])
    b2 = b.reshape(-1, b.shape[-2] * b.shape[-1])
    out = np.full(len(a2), np.nan)
    for i, (u, v) in enumerate(zip(a2, b2)):
        if np.ptp(u) > 0 and np.ptp(v) > 0:
            out[i] = stats.spearmanr(u, v).statistic
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of flattened maps (``nan`` for a constant map)."""
    a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
    out = np.full(len(a2), np.nan)
    for i, (u, v) in enumerate(zip(a2, b2)):
        if np.ptp(u) > 0 and np.ptp(v) > 0:
            out[i] = stats.pearsonr(u, v).statistic
    return out


def _ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM of each pair of ``[0, 1]`` maps, :func:`skimage.metrics.structural_similarity`."""
    return np.array([structural_similarity(u, v, data_range=1.0) for u, v in zip(a, b)])


def _maps(model: nn.Module, x: Tensor, target, rules: Sequence[str], chunk: int = 16) -> dict[str, Tensor]:
    """All rules' signed maps, one forward pass per ``chunk`` images (bounded memory)."""
    target = torch.as_tensor(target)
    if target.dim() == 0:
        target = target.expand(len(x))
    parts = [
        attribute(model, x[i : i + chunk], target[i : i + chunk], rule=list(rules))
        for i in range(0, len(x), chunk)
    ]
    return {rule: torch.cat([part[rule] for part in parts]) for rule in rules}


# --------------------------------------------------------------------------------------------
# class sensitivity (Nie et al., ICML 2018)
# --------------------------------------------------------------------------------------------


@dataclass
class ClassSensitivityResult:
    """Maps of two-object images for each object's class, and how much they differ.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, H, W)``.
    labels : Tensor
        ``(N, 2)``: class A (object 0) and class B (object 1) of each image.
    masks : Tensor
        ``(N, 2, H, W)``: the pixels of object A and object B.
    maps : dict of str to Tensor
        ``rule -> (N, 2, C, H, W)``: the signed map for class A (index 0) and B (index 1).
    spearman : dict of str to ndarray
        ``rule -> (N,)``: Spearman correlation of the abs-normalised maps for A and B.
    spearman_signed : dict of str to ndarray
        The same for the signed (diverging-normalised) maps.
    energy : dict of str to ndarray
        ``rule -> (N, 2, 2)``: ``energy[r][i, t, o]`` is the fraction of the map's
        ``|·|`` (summed over channels) for target ``t`` that lies on object ``o``.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    maps: dict[str, Tensor]
    spearman: dict[str, np.ndarray]
    spearman_signed: dict[str, np.ndarray]
    energy: dict[str, np.ndarray]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def selectivity(self, rule: str) -> np.ndarray:
        """``(N,)``: energy on the target's object over energy on both objects, mean of both targets.

        0.5 means the map puts as much on the other object as on the target's own:
        it does not tell the classes apart.
        """
        e = self.energy[rule]
        own = e[:, 0, 0] / (e[:, 0, 0] + e[:, 0, 1]), e[:, 1, 1] / (e[:, 1, 0] + e[:, 1, 1])
        return (own[0] + own[1]) / 2


def _mask_energy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``(N, T, O)`` fraction of each target's ``|map|`` energy on each object's mask."""
    energy = np.abs(maps).sum(axis=2)  # (N, T, H, W)
    total = energy.sum(axis=(-2, -1))  # (N, T)
    on = np.einsum("nthw,nohw->nto", energy, masks.astype(energy.dtype))
    return on / np.where(total > 0, total, 1.0)[..., None]


def class_sensitivity(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    rules: Sequence[str] = RULES,
) -> ClassSensitivityResult:
    """Compare each rule's map for class A with its map for class B on the same image [NIE]_.

    Nie et al. show that guided backprop and DeConvNet mostly reconstruct the image,
    so their maps barely depend on the class asked for, while the gradient's do.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    images : Tensor
        ``(N, 3, H, W)`` two-object images, e.g. ``dl.data.shapes(n, objects=2).images``.
    labels : Tensor
        ``(N, 2)`` the two classes of each image.
    masks : Tensor
        ``(N, 2, H, W)`` the two objects' pixels.
    rules : sequence of str
        The rules to compare.

    Returns
    -------
    ClassSensitivityResult
    """
    if labels.dim() != 2 or labels.shape[1] != 2:
        raise ValueError(f"labels must be (N, 2), got {tuple(labels.shape)}; use shapes(n, objects=2)")
    n = len(images)
    both = torch.cat([images, images])
    targets = torch.cat([labels[:, 0], labels[:, 1]])
    signals = _maps(model, both, targets, rules)
    maps, rho, rho_signed, energy = {}, {}, {}, {}
    m = masks.numpy()
    for rule, signal in signals.items():
        pair = torch.stack([signal[:n], signal[n:]], dim=1)  # (N, 2, C, H, W)
        maps[rule] = pair
        rho[rule] = spearman(abs_normalise(pair[:, 0]), abs_normalise(pair[:, 1]))
        rho_signed[rule] = spearman(diverging_normalise(pair[:, 0]), diverging_normalise(pair[:, 1]))
        energy[rule] = _mask_energy(pair.numpy(), m)
    return ClassSensitivityResult(images, labels, masks, maps, rho, rho_signed, energy)


# --------------------------------------------------------------------------------------------
# cascading randomisation (Adebayo et al., NeurIPS 2018)
# --------------------------------------------------------------------------------------------


def randomisation_order(model: nn.Module) -> list[str]:
    """Names of the layers that own weights, from the top (logits) down.

    The order is the reverse of the modules' registration order, which is the
    forward order for ``nn.Sequential`` models such as the teaching CNN.
    """
    names = [name for name, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


@torch.no_grad()
def reinitialise_(module: nn.Module) -> None:
    """Re-initialise one layer in place, the way :class:`deconvlab.models.TeachingCNN` is initialised.

    Convolutions: He-normal weights (``fan_out``, ReLU gain; He et al., ICCV 2015) and
    zero bias; linear layers: ``N(0, 0.01²)`` weights and zero bias; any other layer
    its own ``reset_parameters()``. Uses torch's global generator (seed it first).
    """
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        init_weights(module)
    elif hasattr(module, "reset_parameters"):
        module.reset_parameters()
    else:
        raise TypeError(f"do not know how to re-initialise {type(module).__name__}")


@dataclass
class CascadeResult:
    """Maps of every stage of a cascading randomisation, and their similarity to the original.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, H, W)``.
    targets : Tensor
        ``(N,)`` the class explained at every stage.
    stages : list of str
        ``"original"``, then the layer re-initialised at each stage (cumulatively).
    maps : dict of str to Tensor
        ``rule -> (S, N, C, H, W)`` signed maps.
    spearman_abs, spearman_signed, ssim : dict of str to ndarray
        ``rule -> (S, N)``: similarity of each stage's map to the original's, with
        the abs-normalised maps (rank correlation, SSIM) or the signed ones.
    """

    images: Tensor
    targets: Tensor
    stages: list[str]
    maps: dict[str, Tensor]
    spearman_abs: dict[str, np.ndarray]
    spearman_signed: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def mean(self, metric: str = "spearman_abs") -> dict[str, np.ndarray]:
        """``rule -> (S,)`` the mean over images of ``metric`` at each stage (NaNs ignored)."""
        table = getattr(self, metric)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {rule: np.nanmean(v, axis=1) for rule, v in table.items()}


def cascading_randomisation(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | int,
    rules: Sequence[str] = RULES,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> CascadeResult:
    """Re-initialise the layers from the logits down, cumulatively, and compare the maps [ADEBAYO]_.

    The model is deep-copied first: ``model`` itself is never modified. Stage 0 is
    the trained model; stage ``k`` has the top ``k`` layers of ``layers`` re-initialised
    (:func:`reinitialise_`, under ``torch.manual_seed(seed)`` inside
    :func:`torch.random.fork_rng`, so the caller's random state is untouched).
    The target stays the same at every stage.

    Parameters
    ----------
    model : nn.Module
        The trained model.
    images : Tensor
        ``(N, C, H, W)``.
    targets : int, sequence or Tensor
        The class explained (one per image, or one for all).
    rules : sequence of str
    layers : sequence of str, optional
        Layers in the order they are re-initialised; default :func:`randomisation_order`.
    seed : int, default 0

    Returns
    -------
    CascadeResult
    """
    layers = list(randomisation_order(model) if layers is None else layers)
    targets = torch.as_tensor(targets)
    if targets.dim() == 0:
        targets = targets.expand(len(images))
    copy_ = copy.deepcopy(model)
    modules = dict(copy_.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"unknown layers {missing}; choose from randomisation_order(model)")
    per_stage = [_maps(copy_, images, targets, rules)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            reinitialise_(modules[name])
            per_stage.append(_maps(copy_, images, targets, rules))
    maps = {rule: torch.stack([stage[rule] for stage in per_stage]) for rule in rules}
    rho_abs, rho_signed, ssim = {}, {}, {}
    for rule, m in maps.items():
        a = abs_normalise(m.flatten(0, 1)).reshape(len(m), len(images), *m.shape[-2:])
        d = diverging_normalise(m.flatten(0, 1)).reshape(a.shape)
        rho_abs[rule] = np.stack([spearman(a[0], s) for s in a])
        rho_signed[rule] = np.stack([spearman(d[0], s) for s in d])
        ssim[rule] = np.stack([_ssim(a[0], s) for s in a])
    return CascadeResult(images, targets, ["original", *layers], maps, rho_abs, rho_signed, ssim)


# --------------------------------------------------------------------------------------------
# image recovery (Nie et al., ICML 2018)
# --------------------------------------------------------------------------------------------


def edge_map(images: Tensor | np.ndarray) -> np.ndarray:
    """``(N, H, W)`` gradient magnitude (Sobel) of each image's channel mean: where its edges are."""
    gray = _numpy(images).mean(axis=-3).reshape(-1, *images.shape[-2:])
    # one image at a time: a Sobel filter on a stack would also smooth across the images
    return np.stack([np.hypot(ndimage.sobel(g, axis=0), ndimage.sobel(g, axis=1)) for g in gray])


def image_recovery(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | int,
    rules: Sequence[str] = RULES,
    against: str = "image",
) -> dict[str, np.ndarray]:
    """How much each rule's map looks like the input: a Pearson correlation per image [NIE]_.

    Nie et al. prove that guided backprop and DeConvNet essentially reconstruct the
    input, whatever the weights: their maps look like the image even for an untrained
    network, the gradient's do not.

    Parameters
    ----------
    against : {"image", "edges"}
        ``"image"`` (default): :func:`scipy.stats.pearsonr` between the signed map and
        the image, each colour channel centred on its mean, over all channels and
        pixels. ``"edges"``: between ``|map|`` summed over channels and
        :func:`edge_map` of the image.

    Returns
    -------
    dict of str to ndarray
        ``rule -> (N,)`` correlations.
    """
    maps = _maps(model, images, targets, rules)
    if against == "image":
        x = _numpy(images)
        reference = x - x.mean(axis=(-2, -1), keepdims=True)
        return {rule: _pearson(m.numpy(), reference) for rule, m in maps.items()}
    if against == "edges":
        edges = edge_map(images)
        return {rule: _pearson(np.abs(m.numpy()).sum(axis=1), edges) for rule, m in maps.items()}
    raise ValueError(f"against must be 'image' or 'edges', got {against!r}")


# --------------------------------------------------------------------------------------------
# input-shift invariance (Kindermans et al. 2017)
# --------------------------------------------------------------------------------------------


class ShiftedInputConv2d(nn.Module):
    r"""A convolution that takes ``x + c`` and computes what ``conv`` computes on ``x``.

    Kindermans et al. [KINDERMANS]_: the bias absorbs the shift, ``b' = b - W c``
    (``W c`` summed over the kernel). With zero padding the border pixels would see
    ``0`` instead of ``-c``, so the padding value becomes ``c``: then
    ``conv'(x + c) = conv(x)`` exactly, at every position.
    """

    def __init__(self, conv: nn.Conv2d, shift: float) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only convolutions with numeric zero padding are supported")
        self.shift = float(shift)
        self.padding = tuple(p for p in conv.padding[::-1] for _ in range(2))  # F.pad order
        self.conv = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
            conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(self.conv.bias)
            self.conv.bias.copy_(bias - self.shift * conv.weight.sum(dim=(1, 2, 3)))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.pad(x, self.padding, value=self.shift))


def shift_compensated(model: nn.Module, shift: float, layer: str | None = None) -> nn.Module:
    """A deep copy of ``model`` that gives on ``x + shift`` exactly the outputs ``model`` gives on ``x``.

    Parameters
    ----------
    model : nn.Module
    shift : float
        The constant added to every input pixel.
    layer : str, optional
        The first convolution (default: the first ``nn.Conv2d`` in ``model``).
    """
    copy_ = copy.deepcopy(model)
    if layer is None:
        layer = next((n for n, m in copy_.named_modules() if isinstance(m, nn.Conv2d)), None)
        if layer is None:
            raise ValueError("the model has no nn.Conv2d to absorb the shift")
    parent_name, _, child = layer.rpartition(".")
    parent = copy_.get_submodule(parent_name)
    conv = getattr(parent, child)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"layer {layer!r} is {type(conv).__name__}, not nn.Conv2d")
    setattr(parent, child, ShiftedInputConv2d(conv, shift))
    return copy_.eval()


@dataclass
class ShiftResult:
    """Outputs and maps of a model on ``x`` and of its shift-compensated copy on ``x + shift``.

    Attributes
    ----------
    shift : float
    dtype : torch.dtype
        The precision both networks ran in.
    output_difference : float
        Largest ``|f(x) - f'(x + c)|`` over the batch's logits.
    map_difference : dict of str to float
        Per rule, largest ``|map - map'|`` divided by the largest ``|map|``.
    changed_fraction : dict of str to float
        Per rule, the fraction of map entries that differ by more than 1e-3 of the largest ``|map|``.
    input_x_gradient_difference : float
        Largest difference of input × gradient, relative as above: *not* invariant, ``(x + c)·g ≠ x·g``.
    """

    shift: float
    dtype: torch.dtype
    output_difference: float
    map_difference: dict[str, float]
    changed_fraction: dict[str, float]
    input_x_gradient_difference: float
    maps: dict[str, Tensor] = field(repr=False)
    shifted_maps: dict[str, Tensor] = field(repr=False)


def _relative_difference(a: Tensor, b: Tensor) -> float:
    scale = float(a.abs().max())
    return float((a - b).abs().max()) / (scale if scale > 0 else 1.0)


def _changed_fraction(a: Tensor, b: Tensor, tolerance: float = 1e-3) -> float:
    return float(((a - b).abs() > tolerance * a.abs().max()).double().mean())


def input_shift(
    model: nn.Module,
    images: Tensor,
    targets,
    shift: float = -1.0,
    rules: Sequence[str] = RULES,
    dtype: torch.dtype | None = torch.float64,
) -> ShiftResult:
    """Maps of ``model`` on ``x`` against maps of :func:`shift_compensated` on ``x + shift`` [KINDERMANS]_.

    The two networks compute the same function of the image; all three rules give the
    same maps because their backward passes see the same ReLU inputs, the same
    max-pool switches and the same weights. Input × gradient changes by ``shift · g``.

    Parameters
    ----------
    dtype : torch.dtype or None, default float64
        Precision of the comparison (the model is deep-copied to it; ``model`` is not
        modified). In float32 the two networks' pre-activations differ by rounding
        (about 1e-7 relative), enough to flip the few ReLU gates and max-pool switches
        whose inputs lie within rounding of a tie; float64 makes that vanishingly rare.
        ``None`` keeps the model's own precision.
    """
    work = copy.deepcopy(model).eval()
    if dtype is not None:
        work, images = work.to(dtype), images.to(dtype)
    shifted = shift_compensated(work, shift)
    with torch.no_grad():
        out, out_shifted = work(images), shifted(images + shift)
    names = list(dict.fromkeys([*rules, "gradient"]))
    maps = _maps(work, images, targets, names)
    shifted_maps = _maps(shifted, images + shift, targets, names)
    diff = {rule: _relative_difference(maps[rule], shifted_maps[rule]) for rule in rules}
    changed = {rule: _changed_fraction(maps[rule], shifted_maps[rule]) for rule in rules}
    ixg = _relative_difference(images * maps["gradient"], (images + shift) * shifted_maps["gradient"])
    return ShiftResult(
        float(shift), images.dtype, float((out - out_shifted).abs().max()), diff, changed, ixg,
        {rule: maps[rule] for rule in rules}, {rule: shifted_maps[rule] for rule in rules},
    )


# --------------------------------------------------------------------------------------------
# pointing game (Zhang et al., ECCV 2016; TorchRay's protocol)
# --------------------------------------------------------------------------------------------


def saliency_points(maps: Tensor | np.ndarray, smooth: float = 0.02) -> np.ndarray:
    """``(N, 2)`` (row, column) of each map's maximum, as TorchRay's pointing benchmark.

    The map is reduced to ``max`` over channels of ``|map|`` (TorchRay's
    ``gradient_to_saliency``), blurred by a Gaussian of standard deviation
    ``smooth × max(H, W)`` pixels (TorchRay uses ``smooth=0.02``), and its arg-max taken.
    """
    s = np.abs(_numpy(maps)).max(axis=1)
    sigma = smooth * max(s.shape[-2:])
    if sigma > 0:
        s = ndimage.gaussian_filter(s, sigma=(0, sigma, sigma), mode="constant")
    flat = s.reshape(len(s), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, s.shape[-2:]), axis=1)


def _hits(points: np.ndarray, masks: np.ndarray, tolerance: float) -> np.ndarray:
    """Whether a mask pixel lies strictly closer than ``tolerance`` to each point (TorchRay's test)."""
    h, w = masks.shape[-2:]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    out = np.empty(len(points), bool)
    for i, (r, c) in enumerate(points):
        accept = (rows - r) ** 2 + (cols - c) ** 2 < tolerance**2
        out[i] = bool((masks[i] & accept).any())
    return out


@dataclass
class PointingResult:
    """Hits of the pointing game per method (the rules and ``"center"``).

    Attributes
    ----------
    hits : dict of str to ndarray
        ``method -> (N,)`` bool.
    labels : ndarray
        ``(N,)`` the class of each trial.
    tolerance : float
        Acceptance radius in pixels.
    """

    hits: dict[str, np.ndarray]
    labels: np.ndarray
    tolerance: float
    points: dict[str, np.ndarray] = field(repr=False)

    def accuracy(self, method: str) -> float:
        """Mean over classes of the per-class hit rate (TorchRay's ``PointingGame.accuracy``)."""
        h = self.hits[method]
        return float(np.mean([h[self.labels == c].mean() for c in np.unique(self.labels)]))

    def accuracies(self) -> dict[str, float]:
        return {method: self.accuracy(method) for method in self.hits}


def pointing_game(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    rules: Sequence[str] = RULES,
    tolerance: float | None = None,
    smooth: float = 0.02,
) -> PointingResult:
    """The pointing game: does the maximum of the map land on the object of its class? [ZHANG]_

    TorchRay's protocol: saliency ``max_c |map|`` blurred by ``smooth``
    (:func:`saliency_points`), a hit when a pixel of the class's mask lies within
    ``tolerance`` pixels of the maximum, accuracy averaged over classes. The centre
    baseline always points at the image centre.

    Parameters
    ----------
    model : nn.Module
        The classifier.
    images : Tensor
        ``(N, 3, H, W)``.
    labels : Tensor
        ``(N,)`` one object per image, or ``(N, K)``: every object is a trial.
    masks : Tensor
        ``(N, H, W)`` or ``(N, K, H, W)``, matching ``labels``.
    rules : sequence of str
    tolerance : float, optional
        Acceptance radius in pixels. Default: TorchRay's 15 px scaled from PASCAL VOC
        images of about 500 px, i.e. 3 % of the image side (1.92 px at 64 px).
    smooth : float, default 0.02
        Gaussian blur of the saliency, as a fraction of the image side (TorchRay's value).
    """
    if labels.dim() == 2:  # every (image, object) pair is a trial
        k = labels.shape[1]
        images = images.repeat_interleave(k, dim=0)
        labels, masks = labels.reshape(-1), masks.reshape(-1, *masks.shape[-2:])
    m = masks.numpy().astype(bool)
    maps = _maps(model, images, labels, rules)
    points = {rule: saliency_points(maps[rule], smooth) for rule in rules}
    h, w = m.shape[-2:]
    if tolerance is None:
        tolerance = 15 / 500 * max(h, w)
    points["center"] = np.tile(np.array([h // 2, w // 2]), (len(m), 1))
    hits = {method: _hits(p, m, tolerance) for method, p in points.items()}
    return PointingResult(hits, labels.numpy(), float(tolerance), points)


# --------------------------------------------------------------------------------------------
# published reference tables
# --------------------------------------------------------------------------------------------


@dataclass
class ReferenceTable:
    """A published table shipped in ``deconvlab/reference/``, with the source it came from.

    Attributes
    ----------
    name : str
        File name.
    source : str
        The file's comment lines: where the numbers were published.
    columns : list of str
    rows : list of list of str
    """

    name: str
    source: str
    columns: list[str]
    rows: list[list[str]]

    def row(self, method: str) -> dict[str, float]:
        """The numeric cells of the row whose first cell is ``method``."""
        for r in self.rows:
            if r[0] == method:
                return {c: float(v) for c, v in zip(self.columns[1:], r[1:])}
        raise KeyError(f"no row {method!r} in {self.name}; rows: {[r[0] for r in self.rows]}")

    def to_html(self, highlight: Sequence[str] = ()) -> str:
        """A plain HTML table (bold rows for ``highlight``) with its source underneath."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for r in self.rows:
            cells = "".join(f"<td>{html.escape(v)}</td>" for v in r)
            style = ' style="font-weight:bold"' if r[0] in highlight else ""
            body.append(f"<tr{style}>{cells}</tr>")
        return (
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<p style='font-size:smaller'>{html.escape(self.source)}</p>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def html_table(rows: Mapping[str, Mapping[str, float]], fmt: str = ".2f", caption: str = "") -> str:
    """Measured numbers as a plain HTML table: one row per key of ``rows``, one column per inner key.

    ``fmt`` is the format specification of every number (e.g. ``".1f"``, ``".1e"``).
    """
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *columns])
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td style='text-align:right'>{row[c]:{fmt}}</td>" if c in row else "<td></td>"
                  for c in columns)
        + "</tr>"
        for name, row in rows.items()
    )
    title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


REFERENCE_FILES = {
    "adebayo2018": "sanity_checks_adebayo2018_mnist_cnn.csv",
    "torchray_pointing": "pointing_game_torchray.csv",
}


def reference_table(name: str) -> ReferenceTable:
    """Load a published table: ``"adebayo2018"`` (cascading randomisation, MNIST CNN) or
    ``"torchray_pointing"`` (TorchRay's pointing game on VOC07 / COCO14).

    Read as package data (:mod:`importlib.resources`), so it works wherever deconvlab is installed.
    """
    file = REFERENCE_FILES.get(name, name)
    if file not in REFERENCE_FILES.values():
        raise ValueError(f"unknown reference table {name!r}; choose from {sorted(REFERENCE_FILES)}")
    text = (importlib.resources.files("deconvlab") / "reference" / file).read_text(encoding="utf-8")
    lines = text.splitlines()
    source = " ".join(line.lstrip("# ").strip() for line in lines if line.startswith("#"))
    data = "\n".join(line for line in lines if line and not line.startswith("#"))
    rows = list(csv.reader(io.StringIO(data)))
    return ReferenceTable(file, source, rows[0], rows[1:])


# --------------------------------------------------------------------------------------------
# figures (matplotlib Figures, not attached to pyplot)
# --------------------------------------------------------------------------------------------

_METRIC_TITLES = {
    "spearman_abs": "Spearman, |map| (abs-normalised)",
    "spearman_signed": "Spearman, signed map",
    "ssim": "SSIM, |map| (abs-normalised)",
}


def plot_cascade(
    result: CascadeResult,
    stage_labels: Sequence[str] | None = None,
    reference: ReferenceTable | None = None,
):
    """Similarity to the trained model's map against randomisation depth, one line per rule.

    Three panels (Spearman of |map|, Spearman of the signed map, SSIM), means over the
    images with the interquartile range shaded; with ``reference`` (e.g.
    ``reference_table("adebayo2018")``) a fourth panel draws the published curves of
    the rules it shares with ``result``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    labels = list(stage_labels) if stage_labels is not None else list(result.stages)
    colour = {rule: f"C{k}" for k, rule in enumerate(result.rules)}
    panels = len(_METRIC_TITLES) + (reference is not None)
    fig = Figure(figsize=(4.0 * panels, 3.6), layout="constrained")
    axes = fig.subplots(1, panels, sharey=True)
    x = np.arange(len(labels))
    for ax, (metric, title) in zip(axes, _METRIC_TITLES.items()):
        values = getattr(result, metric)
        for rule in result.rules:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(values[rule], axis=1)
                q1, q3 = np.nanpercentile(values[rule], [25, 75], axis=1)
            ax.plot(x, mean, "o-", color=colour[rule], label=rule)
            ax.fill_between(x, q1, q3, color=colour[rule], alpha=0.15)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("re-initialised down to")
    axes[0].set_ylabel("similarity to the trained model's map")
    axes[0].set_ylim(-0.3, 1.05)
    axes[0].legend(fontsize=8)
    if reference is not None:
        ax = axes[-1]
        stages = reference.columns[1:]
        for rule in result.rules:
            try:
                row = reference.row(rule)
            except KeyError:
                continue
            ax.plot(range(len(stages)), [row[s] for s in stages], "s--", color=colour[rule], label=rule)
        ax.set_xticks(range(len(stages)), stages, rotation=45, ha="right", fontsize=8)
        ax.set_title("published: MNIST CNN, Spearman |map|", fontsize=10)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.legend(fontsize=8)
    return fig


def plot_class_sensitivity(result: ClassSensitivityResult):
    """Per-image Spearman(map for A, map for B) of each rule, as dots with the median marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    fig.suptitle("Spearman(map for class A, map for class B), one dot per image", fontsize=10)
    jitter = np.random.default_rng(0)
    for ax, (values, title) in zip(
        axes, ((result.spearman, "|map| (abs-normalised)"), (result.spearman_signed, "signed map"))
    ):
        for k, rule in enumerate(result.rules):
            v = values[rule]
            ax.plot(k + jitter.uniform(-0.15, 0.15, len(v)), v, "o", color=f"C{k}", alpha=0.5, ms=4)
            ax.plot([k - 0.3, k + 0.3], [np.nanmedian(v)] * 2, "k-", lw=2)
        ax.set_xticks(range(len(result.rules)), result.rules, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.8)
    axes[0].set_ylabel("rank correlation")
    return fig
