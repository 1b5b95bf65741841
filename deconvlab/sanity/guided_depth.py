r"""Where image recovery comes from: the guided rule from layer ``k`` upward (Nie, Zhang and Patel, 2018).

Guided backprop's backward ReLU is ``p · [x > 0] · [p > 0]``, the gradient's ``p · [x > 0]``. A
rule map (:class:`deconvlab.RuleMap`) gives the ReLUs of layers ``k, k+1, ...`` (counted from the
input, 1 = the first ReLU) the guided rule and the ReLUs below them the gradient: ``k = 1`` is
guided backprop, ``k = L + 1`` (``L`` ReLU layers) the plain gradient. Nie et al. explain image
recovery by the backward ReLUs of the *lower* layers together with the max-pool switches; so
the map should start to look like the image only once ``k`` reaches the lowest layers.
:func:`recovery_by_depth` measures that with :func:`deconvlab.metrics.image_correlation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import attribute
from ..checks import as_choice, as_int, check_input, check_model, check_target, describe, renaming
from ..metrics import edge_correlation, image_correlation
from ..rule_maps import RuleMap

__all__ = [
    "GuidedDepthResult",
    "guided_from_layer",
    "guided_from_layer_maps",
    "recovery_by_depth",
    "relu_layers",
]

_AGAINST = {"image": image_correlation, "edges": edge_correlation}


def relu_layers(model: nn.Module) -> list[str]:
    """Paths of the model's ``nn.ReLU`` modules, in registration order (the forward order of a
    ``nn.Sequential`` model such as the teaching CNN): layer ``k`` is item ``k - 1``.

    Raises
    ------
    TypeError
        ``model`` is no ``nn.Module``.
    ValueError
        The model has no ``nn.ReLU`` module (a functional ``F.relu`` has no path to place a rule at),
        or is one.
    """
    check_model(model)
    if isinstance(model, nn.ReLU):
        raise ValueError("model is a single nn.ReLU: layers are counted inside a model, so pass the network")
    names = [name for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
    if not names:
        raise ValueError(
            f"model: the {type(model).__name__} has no nn.ReLU module: a rule map places rules by "
            "module path, so write its ReLUs as nn.ReLU modules (or build a deconvlab.RuleMap on the "
            "modules calling them)"
        )
    return names


def _check_k(model: nn.Module, k: object) -> int:
    layers = len(relu_layers(model))
    return as_int("k", k, 1, layers + 1)


def _check_ks(model: nn.Module, ks: object) -> list[int]:
    """``ks`` as a list of layer numbers from 1 to ``L + 1`` (None: all of them, top down)."""
    top = len(relu_layers(model)) + 1
    if ks is None:
        return list(range(top, 0, -1))
    one_dimensional = not isinstance(ks, (Tensor, np.ndarray)) or ks.ndim == 1
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable) or not one_dimensional:
        raise TypeError(f"ks must be a list of ReLU layer numbers from 1 to {top}, got {describe(ks)}")
    numbers = [as_int(f"ks[{i}]", k, 1, top) for i, k in enumerate(ks)]
    if not numbers:
        raise ValueError(f"ks is empty; give ReLU layer numbers from 1 to {top}, or None for all")
    return numbers


def guided_from_layer(model: nn.Module, k: int, *, below: bool = False) -> RuleMap:
    """The rule map "guided backprop from ReLU layer ``k`` upward, the gradient below".

    Parameters
    ----------
    model : nn.Module
    k : int
        From 1 (every ReLU guided: guided backprop) to ``L + 1`` (none: the gradient), with
        ``L = len(relu_layers(model))``.
    below : bool, default False
        The complement instead: guided backprop in the layers *below* ``k`` (``1 .. k - 1``) and
        the gradient from ``k`` upward (``k = 1``: the gradient; ``k = L + 1``: guided backprop).

    Returns
    -------
    RuleMap
        Every ReLU layer placed: ``{path of ReLU j: "gradient" for j < k, "guided_backprop" for
        j >= k}`` (swapped with ``below=True``), default ``"gradient"``, named
        ``"guided from ReLU k"`` (``"guided below ReLU k"``).

    Raises
    ------
    TypeError, ValueError
        ``k`` is no integer from 1 to ``L + 1``; the model has no ``nn.ReLU`` module.
    """
    k = _check_k(model, k)
    guided = {True: "guided_backprop", False: "gradient"}
    entries = {name: guided[(j < k) == below] for j, name in enumerate(relu_layers(model), 1)}
    return RuleMap(entries, default="gradient", name=f"guided {'below' if below else 'from'} ReLU {k}")


def guided_from_layer_maps(
    model: nn.Module, x: Tensor, target, ks: Sequence[int] | None = None, *, below: bool = False
) -> dict[int, Tensor]:
    """The signed map of ``x`` for every ``k`` in ``ks``, from ONE forward pass (one backward per ``k``).

    Parameters
    ----------
    model, x, target
        As in :func:`deconvlab.attribute`.
    ks : sequence of int, optional
        Default: every ``k`` from ``L + 1`` down to 1.
    below : bool, default False
        The complementary maps (guided below ``k``), as in :func:`guided_from_layer`.

    Returns
    -------
    dict of int to Tensor
        ``k ->`` the map under :func:`guided_from_layer` ``(model, k, below=below)``, shaped like ``x``.

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`deconvlab.attribute`; ``ks`` is no list of integers from 1 to ``L + 1`` (an
        item named ``ks[i]``), or empty.

    Examples
    --------
    >>> maps = guided_from_layer_maps(model, x, 3, [1, 3, 6])   # doctest: +SKIP
    >>> maps[3]   # guided backprop at ReLU layers 3, 4, 5; the gradient at layers 1 and 2
    """
    ks = _check_ks(model, ks)
    maps = {k: guided_from_layer(model, k, below=below) for k in ks}
    signals = attribute(model, x, target, rules=list(maps.values()))
    return {k: signals[rule_map.name] for k, rule_map in maps.items()}


@dataclass
class GuidedDepthResult:
    """Maps with the guided rule from layer ``k`` upward (and below ``k``), and their likeness to the image.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, H, W)``.
    targets : Tensor
        ``(N,)``.
    layers : list of str
        Paths of the ReLU layers, from the input up (layer ``k`` is ``layers[k - 1]``).
    upper, lower : dict of int to Tensor
        ``k -> (N, C, H, W)`` signed maps, ``k`` from ``L + 1`` down to 1: guided from ``k``
        upward (``upper``; ``k = L + 1`` is the gradient, ``k = 1`` guided backprop), and guided
        below ``k`` (``lower``, the complement).
    correlation_upper, correlation_lower : dict of int to ndarray
        ``k -> (N,)`` Pearson correlation of each map with its image (``against="image"``) or of
        ``|map|`` with the image's edges (``"edges"``).
    """

    images: Tensor
    targets: Tensor
    layers: list[str]
    upper: dict[int, Tensor]
    lower: dict[int, Tensor]
    correlation_upper: dict[int, np.ndarray]
    correlation_lower: dict[int, np.ndarray]

    @property
    def ks(self) -> list[int]:
        """The ``k`` computed, from ``L + 1`` down to 1."""
        return list(self.upper)

    def mean(self, part: str = "upper") -> dict[int, float]:
        """``k ->`` the mean correlation over the images of the ``"upper"`` or ``"lower"`` maps."""
        if part not in ("upper", "lower"):
            raise ValueError(f"part must be 'upper' or 'lower', got {part!r}")
        table = self.correlation_upper if part == "upper" else self.correlation_lower
        return {k: float(np.nanmean(v)) for k, v in table.items()}

    def layers_text(self, k: int, part: str = "upper") -> str:
        """Which ReLU layers are guided at ``k``, e.g. ``"ReLU 3-5"``, ``"none"`` or ``"all"``."""
        count = len(self.layers)
        first, last = (k, count) if part == "upper" else (1, k - 1)
        if first > last:
            return "none (the gradient)"
        if (first, last) == (1, count):
            return "all (guided backprop)"
        return f"ReLU {first}" if first == last else f"ReLU {first}-{last}"


def recovery_by_depth(
    model: nn.Module,
    images: Tensor,
    targets,
    against: str = "image",
    chunk: int = 16,
) -> GuidedDepthResult:
    """Image recovery of the maps with the guided rule from layer ``k`` upward, and below ``k``, per ``k``.

    Parameters
    ----------
    model : nn.Module
    images : Tensor
        ``(N, 3, H, W)``.
    targets : int, sequence or Tensor
        The class explained: one per image, or one for all.
    against : {"image", "edges"}
        As in :func:`deconvlab.sanity.image_recovery`.
    chunk : int, default 16
        Images per forward pass (one forward pass serves all ``2 (L + 1)`` maps).

    Returns
    -------
    GuidedDepthResult

    Raises
    ------
    TypeError, ValueError, IndexError
        As :func:`deconvlab.attribute` for ``model``, ``images`` (as ``x``) and ``targets`` (as
        ``target``), each message naming the argument; no images; ``against`` is neither "image"
        nor "edges"; ``chunk`` is no integer of at least 1.
    """
    check_model(model)
    check_input(images, "images")
    if not len(images):
        raise ValueError(f"images is empty (shape {tuple(images.shape)}); give at least one image")
    against = as_choice("against", against, list(_AGAINST))
    chunk = as_int("chunk", chunk, minimum=1)
    with renaming("targets", "target"):
        check_target(targets)
    targets = torch.as_tensor(targets)
    if targets.dim() == 0:
        targets = targets.expand(len(images))
    top = len(relu_layers(model)) + 1
    ks = list(range(top, 0, -1))
    chosen = {
        (part, k): guided_from_layer(model, k, below=part == "lower")
        for part in ("upper", "lower")
        for k in ks
    }
    parts = []
    rules = list(chosen.values())
    for i in range(0, len(images), chunk):
        with renaming("images"), renaming("targets", "target"):
            signals = attribute(model, images[i : i + chunk], targets[i : i + chunk], rules=rules)
        parts.append({key: signals[rule_map.name] for key, rule_map in chosen.items()})
    maps = {key: torch.cat([part[key] for part in parts]) for key in chosen}
    correlation = {key: _AGAINST[against](m, images) for key, m in maps.items()}
    return GuidedDepthResult(
        images,
        targets,
        relu_layers(model),
        {k: maps["upper", k] for k in ks},
        {k: maps["lower", k] for k in ks},
        {k: correlation["upper", k] for k in ks},
        {k: correlation["lower", k] for k in ks},
    )
