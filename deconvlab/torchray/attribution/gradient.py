r"""TorchRay's ``torchray.attribution.gradient``: gradient saliency (Simonyan et al., ICLR-W 2014).

:func:`gradient` is :func:`~.common.saliency` with the plain gradient,
:math:`\operatorname{ReLU}^*(x, p) = p \cdot [x > 0]`.
"""

from __future__ import annotations

from typing import Any

from .common import saliency

__all__ = ["gradient"]


def gradient(*args: Any, context_builder: Any = None, **kwargs: Any) -> Any:
    """Gradient saliency; same arguments and return values as :func:`~.common.saliency`.

    ``context_builder`` must stay None: the method is the plain gradient.
    """
    if context_builder is not None:
        raise ValueError("gradient() is the plain gradient; it takes no context_builder")
    return saliency(*args, **kwargs)
