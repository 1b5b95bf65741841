"""Image recovery (Nie, Zhang and Patel, ICML 2018): do an untrained network's maps look like the input?"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor, nn

from ..metrics import edge_correlation, image_correlation
from ..rules import BUILTIN_NAMES
from ._maps import rule_maps

__all__ = ["image_recovery"]

_AGAINST = {"image": image_correlation, "edges": edge_correlation}


def image_recovery(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | Sequence[int] | int,
    rules: Sequence[str] = BUILTIN_NAMES,
    against: str = "image",
) -> dict[str, np.ndarray]:
    """How much each rule's map looks like the input: a Pearson correlation per image.

    Nie et al. prove that guided backprop and DeConvNet essentially reconstruct the
    input, whatever the weights: their maps look like the image even for an untrained
    network, the gradient's do not.

    Parameters
    ----------
    against : {"image", "edges"}
        ``"image"`` (default): :func:`deconvlab.metrics.image_correlation`, the signed map
        against the image with each colour channel centred on its mean. ``"edges"``:
        :func:`deconvlab.metrics.edge_correlation`, ``|map|`` summed over channels
        against the image's :func:`~deconvlab.metrics.edge_map`.

    Returns
    -------
    dict of str to ndarray
        ``rule -> (N,)`` correlations.
    """
    if against not in _AGAINST:
        raise ValueError(f"against must be 'image' or 'edges', got {against!r}")
    maps = rule_maps(model, images, targets, rules)
    return {rule: _AGAINST[against](m, images) for rule, m in maps.items()}
