"""TorchRay's ``torchray.attribution.gradient``: gradient saliency (Simonyan et al., 2014)."""

from __future__ import annotations

from typing import Any, Callable

from .common import NullContext, saliency

__all__ = ["gradient"]


def gradient(*args: Any, context_builder: Callable[[], object] = NullContext, **kwargs: Any) -> Any:
    """Gradient saliency, ``ReLU*(x, p) = p · [x > 0]``; same arguments as :func:`~.common.saliency`."""
    return saliency(*args, context_builder=context_builder, **kwargs)
