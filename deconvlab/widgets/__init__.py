"""Slider explorers used by the notebooks, each a library object usable without a slider.

Every explorer has ``controls`` (name -> ipywidget), a ``view`` updated in place,
and ``widget`` (the box to display; the explorer itself also displays). Moving a
control from code (``explorer.controls["x"].value = 0.5``) does what a student's
drag does. Core ipywidgets only: works with ipywidgets 7.7 (Colab) and 8.x.
"""

from ._base import Explorer
from .cnn_explorer import CNNExplorer
from .custom_rule_explorer import CustomRuleExplorer
from .input_explorer import InputExplorer
from .projection_explorer import ProjectionExplorer
from .recovery_explorer import RecoveryExplorer
from .rule_explorer import RuleExplorer
from .sanity_explorer import ClassSensitivityExplorer, RandomisationExplorer

__all__ = [
    "CNNExplorer",
    "ClassSensitivityExplorer",
    "CustomRuleExplorer",
    "Explorer",
    "InputExplorer",
    "ProjectionExplorer",
    "RandomisationExplorer",
    "RecoveryExplorer",
    "RuleExplorer",
]
