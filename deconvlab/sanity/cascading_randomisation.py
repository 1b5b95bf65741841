"""Cascading randomisation (Adebayo et al., NeurIPS 2018): re-initialise the layers from the logits down."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics import abs_normalise, diverging_normalise, spearman, ssim
from ..models import init_weights
from ..rules import BUILTIN_NAMES
from ._maps import MethodOptions, rule_maps
from ._results import restrict_to_rules

__all__ = ["CascadeResult", "cascading_randomisation", "randomisation_order", "reinitialise_"]


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
    reset = getattr(module, "reset_parameters", None)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        init_weights(module)
    elif callable(reset):
        reset()
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
        ``rule -> (S, N, C, H, W)`` signed maps (``C`` is 1 for Grad-CAM).
    spearman_abs, spearman_signed, ssim : dict of str to ndarray
        ``rule -> (S, N)``: similarity of each stage's map to the original's, with
        the abs-normalised maps (rank correlation, SSIM) or the signed ones.
    seed : int, optional
        The seed of the re-initialisation (``torch.manual_seed(seed)`` before the first layer).
    """

    images: Tensor
    targets: Tensor
    stages: list[str]
    maps: dict[str, Tensor]
    spearman_abs: dict[str, np.ndarray]
    spearman_signed: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    seed: int | None = None

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(self.maps)

    def select(self, rules: Sequence[str]) -> CascadeResult:
        """The same result restricted to ``rules`` (in that order), e.g. for an explorer."""
        return restrict_to_rules(self, rules, ("maps", "spearman_abs", "spearman_signed", "ssim"))

    def mean(self, metric: str = "spearman_abs") -> dict[str, np.ndarray]:
        """``rule -> (S,)`` the mean over images of ``metric`` at each stage (NaNs ignored)."""
        table = getattr(self, metric)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return {rule: np.nanmean(v, axis=1) for rule, v in table.items()}


def _similarities(maps: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S, N)`` Spearman of |map|, Spearman of the signed map and SSIM of |map|, each stage vs stage 0."""
    stages, n = maps.shape[:2]
    a = abs_normalise(maps.flatten(0, 1)).reshape(stages, n, *maps.shape[-2:])
    d = diverging_normalise(maps.flatten(0, 1)).reshape(a.shape)
    return (
        np.stack([spearman(a[0], s) for s in a]),
        np.stack([spearman(d[0], s) for s in d]),
        np.stack([ssim(a[0], s) for s in a]),
    )


def cascading_randomisation(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | int,
    rules: Sequence[str] = BUILTIN_NAMES,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    options: MethodOptions | None = None,
) -> CascadeResult:
    """Re-initialise the layers from the logits down, cumulatively, and compare the maps.

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
        Rules, and any of the compositions ``"grad_cam"``, ``"guided_grad_cam"``, ``"smoothgrad"``
        (:data:`deconvlab.sanity.COMPOSITIONS`, Adebayo et al. test all three).
    layers : sequence of str, optional
        Layers in the order they are re-initialised; default :func:`randomisation_order`.
    seed : int, default 0
    options : MethodOptions, optional
        How the compositions are computed; SmoothGrad adds the same noise at every stage.

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
    per_stage = [rule_maps(copy_, images, targets, rules, options=options)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            reinitialise_(modules[name])
            per_stage.append(rule_maps(copy_, images, targets, rules, options=options))
    maps = {rule: torch.stack([stage[rule] for stage in per_stage]) for rule in rules}
    rho_abs, rho_signed, similarity = {}, {}, {}
    for rule, m in maps.items():
        rho_abs[rule], rho_signed[rule], similarity[rule] = _similarities(m)
    return CascadeResult(images, targets, ["original", *layers], maps, rho_abs, rho_signed, similarity, seed)
