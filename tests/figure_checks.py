"""Measurements of rendered figures: panel sizes, colour keys, text sizes and overlaps, overlay visibility.

A figure from :mod:`deconvlab.viz` labels its axes: ``"panel"`` for a picture, ``"key"`` for a colour key.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox
from PIL import Image

#: Smallest text allowed, in pixels at the figure's own size (fontsize pt * dpi / 72).
MIN_TEXT_PX = 10.0


def draw(fig: Figure):
    """Render ``fig`` with Agg (as savefig would); its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def axes_labelled(fig: Figure, label: str) -> list:
    return [ax for ax in fig.axes if ax.get_label() == label and ax.get_visible()]


def panel_sizes(fig: Figure) -> set[tuple[int, int]]:
    """The distinct ``(width, height)`` in pixels of the figure's picture panels."""
    draw(fig)
    return {tuple(round(v) for v in ax.get_window_extent().size) for ax in axes_labelled(fig, "panel")}


def drawn_texts(fig: Figure) -> list:
    """Every non-empty text the figure draws: figure texts, tick and axis labels, titles, legends."""
    texts = list(fig.texts)
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        texts += ax.get_xticklabels() + ax.get_yticklabels() + [ax.xaxis.label, ax.yaxis.label, ax.title]
        legend = ax.get_legend()
        if legend is not None:
            texts += legend.get_texts()
    if getattr(fig, "_suptitle", None) is not None:
        texts.append(fig._suptitle)
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def smallest_text_px(fig: Figure) -> float:
    """The smallest font size drawn, in pixels at the figure's dpi."""
    return min(t.get_fontsize() * fig.dpi / 72 for t in drawn_texts(fig))


def text_problems(fig: Figure) -> list[str]:
    """Figure texts that leave the figure or overlap one another (titles, key labels, row labels)."""
    renderer = draw(fig)
    width, height = fig.bbox.width, fig.bbox.height
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.texts if t.get_text().strip()]
    problems = [
        f"{text!r} leaves the figure"
        for text, b in boxes
        if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > width + 0.5 or b.y1 > height + 0.5
    ]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        inter = Bbox.intersection(box_a, box_b)
        if inter is not None and inter.width > 1 and inter.height > 1:
            problems.append(f"{a!r} overlaps {b!r}")
    return problems


def figure_width_px(fig: Figure) -> int:
    return round(fig.get_figwidth() * fig.dpi)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def visible_fraction(picture: np.ndarray, reference: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of pixels whose colour differs from ``reference`` by more than ``threshold`` in some channel."""
    a, b = np.asarray(picture, np.float32), np.asarray(reference, np.float32)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    if b.ndim == 2:
        b = np.repeat(b[..., None], 3, -1)
    return float((np.abs(a[..., :3] - b[..., :3]).max(-1) > threshold).mean())


def check_figure(fig: Figure, max_width: int) -> None:
    """The conventions every figure keeps: one panel size, text >= 10 px, nothing overlaps, narrow enough."""
    sizes = panel_sizes(fig)
    assert len(sizes) <= 1, f"panels of several sizes: {sizes}"
    assert smallest_text_px(fig) >= MIN_TEXT_PX, smallest_text_px(fig)
    assert not text_problems(fig), text_problems(fig)
    assert figure_width_px(fig) <= max_width, figure_width_px(fig)
