"""Figures of the sanity checks (matplotlib Figures, not attached to pyplot).

Rules are named by their label (:func:`deconvlab.viz.rule_label`), as everywhere else.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from .cascading_randomisation import CascadeResult
from .class_sensitivity import ClassSensitivityResult
from .reference import ReferenceTable

__all__ = ["plot_cascade", "plot_class_sensitivity"]

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
    for ax, metric in zip(axes, _METRIC_TITLES):
        _draw_cascade_metric(ax, result, metric, colour)
        ax.set_xticks(np.arange(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes[0].set_ylabel("similarity to the trained model's map")
    axes[0].set_ylim(-0.3, 1.05)
    axes[0].legend(fontsize=8)
    if reference is not None:
        _draw_reference(axes[-1], result, reference, colour)
    return fig


def plot_class_sensitivity(result: ClassSensitivityResult):
    """Per-image Spearman(map for A, map for B) of each rule, as dots with the median marked.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from ..viz import rule_label

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
        ax.set_xticks(range(len(result.rules)), [rule_label(rule) for rule in result.rules], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.8)
    axes[0].set_ylabel("rank correlation")
    return fig
