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

The layout shows the architecture, each layer using only those before it:

* core: :mod:`~deconvlab.rules` (the equation), :mod:`~deconvlab.relu` (the autograd
  function), :mod:`~deconvlab.rule_maps` (a rule per layer), :mod:`~deconvlab.context`
  (the context manager), :mod:`~deconvlab.recording` (the one forward pipeline),
  :mod:`~deconvlab.attribution` (attribute, project), and its compositions
  :mod:`~deconvlab.cam` (Grad-CAM, Guided Grad-CAM) and :mod:`~deconvlab.smoothing`;
* measurement: :mod:`~deconvlab.metrics` (pure functions on maps, masks and images);
* experiments: :mod:`~deconvlab.sanity` (the published sanity checks),
  :mod:`~deconvlab.zeiler_fergus`, :mod:`~deconvlab.toynets`;
* teaching material: :mod:`~deconvlab.models`, :mod:`~deconvlab.data`, :mod:`~deconvlab.train`,
  and where it runs: :mod:`~deconvlab.runtime` (Binder or Colab, torch's thread count);
* presentation: :mod:`~deconvlab.viz`, :mod:`~deconvlab.widgets`, :mod:`~deconvlab.cli`;
* TorchRay's API under its own module paths: :mod:`~deconvlab.torchray`;
* the course: :mod:`~deconvlab.course` (exercise checkers, student and instructor versions).

The submodules past the core are imported when first used (matplotlib, ipywidgets and
scikit-image load only then); ``dir(deconvlab)`` and tab completion list them all.
"""

from __future__ import annotations

import importlib
from typing import Any

from .attribution import attribute, explain_rules, project, record
from .cam import grad_cam, guided_grad_cam
from .context import NoReLUWarning, UnsupportedActivationWarning, active_rule, backward_rule
from .rule_maps import RuleMap
from .rules import BUILTIN_RULES, Rule, get_rule, register_rule, rule_names
from .smoothing import smoothgrad

__version__ = "0.2.0"

__all__ = [
    "BUILTIN_RULES",
    "NoReLUWarning",
    "Rule",
    "RuleMap",
    "UnsupportedActivationWarning",
    "__version__",
    "active_rule",
    "attribute",
    "backward_rule",
    "explain_rules",
    "get_rule",
    "grad_cam",
    "guided_grad_cam",
    "project",
    "record",
    "register_rule",
    "rule_names",
    "smoothgrad",
]

#: Submodules imported on first use, by layer.
SUBMODULES = (
    "rules",
    "relu",
    "rule_maps",
    "escapes",
    "interrupts",
    "observations",
    "context",
    "recording",
    "checks",
    "model_state",
    "runtime",
    "attribution",
    "cam",
    "smoothing",
    "metrics",
    "sanity",
    "zeiler_fergus",
    "toynets",
    "models",
    "data",
    "train",
    "viz",
    "widgets",
    "cli",
    "torchray",
    "course",
)


def __getattr__(name: str) -> Any:
    """Import the heavier submodules (matplotlib, ipywidgets) only when first used."""
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'deconvlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names and every submodule, for ``dir()`` and tab completion."""
    return sorted({*__all__, *SUBMODULES})
