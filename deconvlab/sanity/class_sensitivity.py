"""Class sensitivity (Nie, Zhang and Patel, ICML 2018): the map for class A against the map for class B."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics import abs_normalise, diverging_normalise, mask_energy_fraction, spearman
from ..rules import BUILTIN_NAMES
from ._maps import MethodOptions, rule_maps
from ._results import restrict_to_rules

__all__ = ["ClassSensitivityResult", "class_sensitivity"]


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
        ``rule -> (N, 2, C, H, W)``: the signed map for class A (index 0) and B (index 1);
        ``C`` is 1 for Grad-CAM.
    spearman : dict of str to ndarray
        ``rule -> (N,)``: Spearman correlation of the abs-normalised maps for A and B.
    spearman_signed : dict of str to ndarray
        The same for the signed (diverging-normalised) maps.
    energy : dict of str to ndarray
        ``rule -> (N, 2, 2)``: ``energy[r][i, t, o]`` is the fraction of the map's energy
        ``sum_c s²`` for target ``t`` that lies on object ``o``
        (:func:`deconvlab.metrics.mask_energy_fraction`).
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

    def select(self, rules: Sequence[str]) -> ClassSensitivityResult:
        """The same result restricted to ``rules`` (in that order), e.g. for an explorer."""
        return restrict_to_rules(self, rules, ("maps", "spearman", "spearman_signed", "energy"))

    def selectivity(self, rule: str) -> np.ndarray:
        """``(N,)``: energy on the target's object over energy on both objects, mean of both targets.

        0.5 means the map puts as much on the other object as on the target's own:
        it does not tell the classes apart. NaN where a map has no energy on either object
        (e.g. a Grad-CAM map that is zero everywhere): average with ``np.nanmean``.
        """
        e = self.energy[rule]
        with np.errstate(invalid="ignore", divide="ignore"):  # no energy on either object: NaN
            own = e[:, 0, 0] / (e[:, 0, 0] + e[:, 0, 1]), e[:, 1, 1] / (e[:, 1, 0] + e[:, 1, 1])
        return (own[0] + own[1]) / 2


def _energy_on_objects(pair: Tensor, masks: Tensor) -> np.ndarray:
    """``(N, T, O)``: fraction of the energy of target ``t``'s map on object ``o``'s mask.

    ``pair`` is ``(N, T, C, H, W)``, ``masks`` ``(N, O, H, W)``.
    """
    return np.stack(
        [
            np.stack(
                [mask_energy_fraction(pair[:, t], masks[:, o]).numpy() for o in range(masks.shape[1])], 1
            )
            for t in range(pair.shape[1])
        ],
        1,
    )


def class_sensitivity(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    masks: Tensor,
    rules: Sequence[str] = BUILTIN_NAMES,
    options: MethodOptions | None = None,
) -> ClassSensitivityResult:
    """Compare each rule's map for class A with its map for class B on the same image.

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
        The rules to compare, and any of the compositions ``"grad_cam"``, ``"guided_grad_cam"``,
        ``"smoothgrad"`` (:data:`deconvlab.sanity.COMPOSITIONS`).
    options : MethodOptions, optional
        How the compositions are computed; SmoothGrad adds the same noise to an image for
        both targets.

    Returns
    -------
    ClassSensitivityResult
    """
    if labels.dim() != 2 or labels.shape[1] != 2:
        raise ValueError(f"labels must be (N, 2), got {tuple(labels.shape)}; use shapes(n, objects=2)")
    for_a = rule_maps(model, images, labels[:, 0], rules, options=options)
    for_b = rule_maps(model, images, labels[:, 1], rules, options=options)
    maps, rho, rho_signed, energy = {}, {}, {}, {}
    for rule in rules:
        pair = torch.stack([for_a[rule], for_b[rule]], dim=1)  # (N, 2, C, H, W)
        maps[rule] = pair
        rho[rule] = spearman(abs_normalise(pair[:, 0]), abs_normalise(pair[:, 1]))
        rho_signed[rule] = spearman(diverging_normalise(pair[:, 0]), diverging_normalise(pair[:, 1]))
        energy[rule] = _energy_on_objects(pair, masks)
    return ClassSensitivityResult(images, labels, masks, maps, rho, rho_signed, energy)
