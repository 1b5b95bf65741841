"""The one place the sanity checks compute maps: every rule, one forward pass per chunk."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..attribution import attribute


def rule_maps(
    model: nn.Module, images: Tensor, targets, rules: Sequence[str], chunk: int = 16
) -> dict[str, Tensor]:
    """Every rule's signed map of ``images`` for ``targets``, as ``{rule: (N, C, H, W)}``.

    One :func:`deconvlab.attribute` call (``rules=...``: one forward pass, one backward
    pass per rule) per ``chunk`` images, so memory stays bounded.

    Parameters
    ----------
    model : nn.Module
    images : Tensor
        ``(N, C, H, W)``.
    targets : int, sequence or Tensor
        The class explained: one per image, or one for all.
    rules : sequence of str
    chunk : int, default 16
    """
    targets = torch.as_tensor(targets)
    if targets.dim() == 0:
        targets = targets.expand(len(images))
    parts = [
        attribute(model, images[i : i + chunk], targets[i : i + chunk], rules=list(rules))
        for i in range(0, len(images), chunk)
    ]
    return {rule: torch.cat([part[rule] for part in parts]) for rule in rules}
