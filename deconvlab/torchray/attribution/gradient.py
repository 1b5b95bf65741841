"""TorchRay's ``torchray.attribution.gradient``: gradient saliency (Simonyan et al., 2014)."""

from __future__ import annotations

from typing import Any

from .common import ContextBuilder, NullContext, saliency

__all__ = ["gradient"]


def gradient(*args: Any, context_builder: ContextBuilder = NullContext, **kwargs: Any) -> Any:
    """Gradient saliency, ``ReLU*(x, p) = p · [x > 0]``; same arguments as :func:`~.common.saliency`."""
    # saliency(*args, context_builder=context_builder, **kwargs), in a form mypy accepts
    kwargs["context_builder"] = context_builder
    return saliency(*args, **kwargs)
