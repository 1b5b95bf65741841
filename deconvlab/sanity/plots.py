"""Figures of the sanity checks (matplotlib Figures, not attached to pyplot).

Rules are named by their label (:func:`deconvlab.viz.rule_label`), as everywhere else. Every figure
keeps to :data:`deconvlab.viz.MAX_WIDTH` pixels and 8-pt (11 px) text at least, so that a notebook
shows it at its own size. The maps are shown the two ways Adebayo et al. compare them
(:data:`DISPLAYS`), each with a colour key stating its clipping percentile.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..metrics import abs_normalise, diverging_normalise
from .cascading_randomisation import CascadeResult
from .class_sensitivity import ClassSensitivityResult
from .reference import ReferenceTable

__all__ = [
    "DISPLAYS",
    "cascade_panels",
    "class_sensitivity_panels",
    "display_arrays",
    "display_key",
    "plot_cascade",
    "plot_cascade_maps",
    "plot_class_sensitivity",
    "plot_class_sensitivity_maps",
]

#: The two ways of showing a map (Adebayo et al.): ``|map|`` and the signed map, each summed over
#: channels and clipped at the 99th percentile of its magnitude.
DISPLAYS = ("|map|", "signed")
#: Outline colours of object A (green) and object B (magenta), on the input only.
OBJECT_COLOURS = ((0.0, 1.0, 0.0), (1.0, 0.0, 1.0))

_METRIC_TITLES = {
    "spearman_abs": "Spearman, |map| (abs-normalised)",
    "spearman_signed": "Spearman, signed map",
    "ssim": "SSIM, |map| (abs-normalised)",
}


def _draw_cascade_metric(ax, result: CascadeResult, metric: str, colour: dict[str, str]) -> None:
    """One panel: the mean over images of ``metric`` per stage, interquartile range shaded."""
    from ..viz import rule_label

    values = getattr(result, metric)
    x = np.arange(len(result.stages))
    for rule in result.rules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values[rule], axis=1)
            q1, q3 = np.nanpercentile(values[rule], [25, 75], axis=1)
        ax.plot(x, mean, "o-", color=colour[rule], label=rule_label(rule))
        ax.fill_between(x, q1, q3, color=colour[rule], alpha=0.15)
    ax.set_title(_METRIC_TITLES[metric], fontsize=10)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("re-initialised down to")


def _draw_reference(ax, result: CascadeResult, reference: ReferenceTable, colour: dict[str, str]) -> None:
    """The published curves of the rules ``reference`` shares with ``result``."""
    from ..viz import rule_label

    stages = reference.columns[1:]
    for rule in result.rules:
        try:
            row = reference.row(rule)
        except KeyError:
            continue
        ax.plot(
            range(len(stages)), [row[s] for s in stages], "s--", color=colour[rule], label=rule_label(rule)
        )
    ax.set_xticks(range(len(stages)), stages, rotation=45, ha="right", fontsize=8)
    ax.set_title("published: MNIST CNN, Spearman |map|", fontsize=10)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8)


def plot_cascade(
    result: CascadeResult,
    stage_labels: Sequence[str] | None = None,
    reference: ReferenceTable | None = None,
):
    """Similarity to the trained model's map against randomisation depth, one line per rule.

    Three panels (Spearman of |map|, Spearman of the signed map, SSIM), means over the
    images with the interquartile range shaded; with ``reference`` (e.g.
    ``reference_table("adebayo2018")``) a fourth panel draws the published curves of
    the rules it shares with ``result``. Two panels a row: 840 px wide at 100 dpi.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from ..viz import DPI

    labels = list(stage_labels) if stage_labels is not None else list(result.stages)
    colour = {rule: f"C{k}" for k, rule in enumerate(result.rules)}
    panels = len(_METRIC_TITLES) + (reference is not None)
    rows = (panels + 1) // 2
    fig = Figure(figsize=(8.4, 3.5 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 2, sharey=True, squeeze=False).ravel()
    for ax, metric in zip(axes, _METRIC_TITLES):
        _draw_cascade_metric(ax, result, metric, colour)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[::2]:
        ax.set_ylabel("similarity to the\ntrained model's map", fontsize=9)
    axes[0].set_ylim(-0.3, 1.05)
    axes[0].legend(fontsize=8)
    if reference is not None:
        _draw_reference(axes[panels - 1], result, reference, colour)
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig


def plot_class_sensitivity(result: ClassSensitivityResult):
    """Per-image Spearman(map for A, map for B) of each rule, as dots with the median marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from ..viz import rule_label

    fig = Figure(figsize=(6.4, 3.4), dpi=100, layout="constrained")
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
        ax.set_xticks(range(len(result.rules)), [rule_label(rule) for rule in result.rules], fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.8)
    axes[0].set_ylabel("rank correlation")
    return fig


# --------------------------------------------------------------------------------------------
# the maps themselves, as the explorers show them
# --------------------------------------------------------------------------------------------


def display_arrays(maps, display: str) -> np.ndarray:
    """``(N, C, H, W)`` signed maps as ``(N, H, W)`` grey pictures in [0, 1].

    ``"|map|"``: :func:`~deconvlab.metrics.abs_normalise`; ``"signed"``:
    ``0.5 + 0.5 ·`` :func:`~deconvlab.metrics.diverging_normalise` (both clip at the 99th percentile).
    """
    if display == "|map|":
        return abs_normalise(maps)
    if display == "signed":
        return 0.5 + 0.5 * diverging_normalise(maps)
    raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")


def display_key(display: str):
    """The colour key of :func:`display_arrays` pictures (:class:`deconvlab.viz.ColourKey`)."""
    from ..viz import ColourKey

    text = "p99 = 99th percentile of |map|,\nthe map summed over channels"
    if display == "|map|":
        return ColourKey("gray", 0.0, 1.0, (0.0, 1.0), ("0", "p99"), text)
    if display == "signed":
        return ColourKey("gray", 0.0, 1.0, (0.0, 0.5, 1.0), ("−p99", "0", "+p99"), text)
    raise ValueError(f"display must be one of {DISPLAYS}, got {display!r}")


def class_sensitivity_panels(
    result: ClassSensitivityResult, index: int = 0, display: str = "|map|", shown=None
) -> list[list]:
    """Two rows of panels for image ``index``: the input with object A outlined and each rule's
    map for class A, then the input with object B outlined and the maps for class B.

    ``shown`` (``rule -> (N, 2, H, W)`` pictures of :func:`display_arrays`) saves recomputing them.
    """
    from ..viz import Panel, as_image, outline_mask, rule_title

    image, masks = as_image(result.images[index]), result.masks[index].numpy()
    key = display_key(display)
    pairs = {
        rule: shown[rule][index] if shown is not None else display_arrays(result.maps[rule][index], display)
        for rule in result.rules
    }
    rows = []
    for target in range(2):
        inputs = outline_mask(image, masks[target], OBJECT_COLOURS[target], halo=True)
        row = [Panel(inputs, "input" if target == 0 else "")]
        for rule in result.rules:
            title = rule_title(rule) if target == 0 else ""
            row.append(Panel(pairs[rule][target], title, key if target == 1 else None))
        rows.append(row)
    return rows


def plot_class_sensitivity_maps(
    result: ClassSensitivityResult,
    index: int = 0,
    display: str = "|map|",
    classes: Sequence[str] | None = None,
    size: int | None = None,
):
    """Image ``index`` of a class-sensitivity check: each rule's maps for class A (top row) and
    class B (bottom row), objects outlined on the inputs only (:func:`class_sensitivity_panels`)."""
    from ..viz import fit_width, panel_figure

    rows = class_sensitivity_panels(result, index, display)
    a, b = (classes[int(c)] if classes is not None else f"class {int(c)}" for c in result.labels[index])
    width = size if size is not None else fit_width(len(rows[0]), result.images.shape[-1], 3, True)
    title = f"image {index}: A = {a} (green), B = {b} (magenta)"
    return panel_figure(rows, width, title=title, row_labels=CLASS_ROWS)


CLASS_ROWS = ("map for class A", "map for class B")
CASCADE_ROWS = ("trained model", "re-initialised")


def cascade_panels(
    result: CascadeResult, stage: int, index: int = 0, display: str = "|map|", shown=None
) -> list[list]:
    """Two rows of panels for image ``index``: the input and each rule's map of the trained model,
    then each rule's map with the layers re-initialised down to ``stage``.

    ``shown`` (``rule -> (S, N, H, W)`` pictures of :func:`display_arrays`) saves recomputing them.
    """
    from ..viz import Panel, as_image, rule_title

    key = display_key(display)
    top: list = [Panel(as_image(result.images[index]), "input")]
    bottom: list = [None]
    for rule in result.rules:
        if shown is not None:
            first, then = shown[rule][0, index], shown[rule][stage, index]
        else:
            first, then = display_arrays(result.maps[rule][[0, stage], index], display)
        top.append(Panel(first, rule_title(rule)))
        bottom.append(Panel(then, "", key))
    return [top, bottom]


def plot_cascade_maps(
    result: CascadeResult,
    stage: int,
    index: int = 0,
    display: str = "|map|",
    stage_labels: Sequence[str] | None = None,
    size: int | None = None,
):
    """Image ``index`` of a cascading randomisation at ``stage``: the trained model's maps above
    the maps with the layers re-initialised down to that stage (:func:`cascade_panels`)."""
    from ..viz import fit_width, panel_figure

    rows = cascade_panels(result, stage, index, display)
    labels = list(stage_labels) if stage_labels is not None else list(result.stages)
    width = size if size is not None else fit_width(len(rows[0]), result.images.shape[-1], 3, True)
    title = f"image {index}, re-initialised down to: {labels[stage]}"
    return panel_figure(rows, width, title=title, row_labels=CASCADE_ROWS)
