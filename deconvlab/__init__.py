r"""deconvlab: gradient, DeConvNet and guided backpropagation as backward rules.

The three methods differ in one thing only, the backward of ReLU
(``x`` the forward input, ``p`` the signal from above):

===================  ===============================
gradient             ``p · [x > 0]``
deconvnet            ``p · [p > 0]``
guided_backprop      ``p · [x > 0] · [p > 0]``
===================  ===============================

>>> import deconvlab as dl
>>> with dl.backward_rule("deconvnet"):        # doctest: +SKIP
...     model(x.requires_grad_())[0, c].backward()

Layout: :mod:`~deconvlab.rules` (the equation), :mod:`~deconvlab.relu` (the
autograd function), :mod:`~deconvlab.context` (the context manager),
:mod:`~deconvlab.attribution` (attribute, project),
:mod:`~deconvlab.torchray_compat` (TorchRay's API), and the lazily imported
:mod:`~deconvlab.models`, :mod:`~deconvlab.data`, :mod:`~deconvlab.viz`,
:mod:`~deconvlab.widgets` and :mod:`~deconvlab.cli`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .attribution import attribute, project
from .context import NoReLUWarning, UnsupportedActivationWarning, active_rule, backward_rule
from .relu import DeConvNetReLU, GuidedBackpropReLU, RuleReLU, relu_with_rule
from .rules import Rule, get_rule, register_rule, rule_names
from .torchray_compat import (
    DeConvNetContext,
    GuidedBackpropContext,
    NullContext,
    deconvnet,
    get_backward_gradient,
    get_example_data,
    gradient,
    gradient_to_saliency,
    guided_backprop,
    plot_example,
    saliency,
)

__version__ = "0.1.0"

__all__ = [
    "DeConvNetContext",
    "DeConvNetReLU",
    "GuidedBackpropContext",
    "GuidedBackpropReLU",
    "NoReLUWarning",
    "NullContext",
    "Rule",
    "RuleReLU",
    "UnsupportedActivationWarning",
    "__version__",
    "active_rule",
    "attribute",
    "backward_rule",
    "deconvnet",
    "get_backward_gradient",
    "get_example_data",
    "get_rule",
    "gradient",
    "gradient_to_saliency",
    "guided_backprop",
    "plot_example",
    "project",
    "register_rule",
    "relu_with_rule",
    "rule_names",
    "saliency",
]

_SUBMODULES = ("models", "data", "viz", "widgets", "sanity", "toynets", "zeiler_fergus", "cli", "train")


def __getattr__(name: str) -> Any:
    """Import the heavier submodules (matplotlib, ipywidgets) only when first used."""
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deconvlab' has no attribute {name!r}")
