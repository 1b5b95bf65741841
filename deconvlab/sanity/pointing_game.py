"""The pointing game (Zhang et al., ECCV 2016) with TorchRay's protocol and the centre baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, nn

from ..metrics import pointing_hits, saliency_points
from ..rules import BUILTIN_NAMES
from ._maps import rule_maps

__all__ = ["PointingResult", "pointing_game"]


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
    rules: Sequence[str] = BUILTIN_NAMES,
    tolerance: float | None = None,
    smooth: float = 0.02,
) -> PointingResult:
    """The pointing game: does the maximum of the map land on the object of its class?

    TorchRay's protocol: saliency ``max_c |map|`` blurred by ``smooth``
    (:func:`deconvlab.metrics.saliency_points`), a hit when a pixel of the class's mask
    lies within ``tolerance`` pixels of the maximum (:func:`deconvlab.metrics.pointing_hits`),
    accuracy averaged over classes. The centre baseline always points at the image centre.

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
    maps = rule_maps(model, images, labels, rules)
    points = {rule: saliency_points(maps[rule], smooth) for rule in rules}
    h, w = m.shape[-2:]
    if tolerance is None:
        tolerance = 15 / 500 * max(h, w)
    points["center"] = np.tile(np.array([h // 2, w // 2]), (len(m), 1))
    hits = {method: pointing_hits(p, m, tolerance) for method, p in points.items()}
    return PointingResult(hits, labels.numpy(), float(tolerance), points)
