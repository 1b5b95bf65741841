r"""Sanity checks: do gradient, DeConvNet and guided-backprop maps explain the model?

The three methods differ only in the backward of ReLU (``x`` the forward input,
``p`` the signal from above): gradient ``p · [x > 0]``, DeConvNet ``p · [p > 0]``,
guided backprop ``p · [x > 0] · [p > 0]``. Each published check is one module:

* :mod:`.class_sensitivity` -- on two-object images, the map for class A against the
  map for class B [NIE]_;
* :mod:`.cascading_randomisation` -- re-initialise the layers from the logits down and
  compare each map with the trained model's [ADEBAYO]_;
* :mod:`.image_recovery` -- maps of an *untrained* network against the input [NIE]_;
* :mod:`.input_shift` -- a constant shift of the input compensated by the first layer's
  bias [KINDERMANS]_;
* :mod:`.pointing_game` -- does the map's maximum land on the object [ZHANG]_, with
  TorchRay's protocol and the centre baseline.

Every check computes its maps with one function (:func:`._maps.rule_maps`, one forward
pass for all rules) and measures them with :mod:`deconvlab.metrics`.
:mod:`.reference` loads the published numbers shipped in ``deconvlab/reference/``;
:mod:`.plots` draws the figures.

References
----------
.. [ADEBAYO] Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, *Sanity Checks for
   Saliency Maps*, NeurIPS 2018, https://arxiv.org/abs/1810.03292 (v3 carries the
   guided-backprop erratum).
.. [NIE] Nie, Zhang and Patel, *A Theoretical Explanation for Perplexing Behaviors of
   Backpropagation-based Visualizations*, ICML 2018, https://arxiv.org/abs/1805.07039.
.. [KINDERMANS] Kindermans, Hooker, Adebayo, Alber, Schütt, Dähne, Erhan and Kim,
   *The (Un)reliability of Saliency Methods*, 2017, https://arxiv.org/abs/1711.00867.
.. [ZHANG] Zhang, Bargal, Lin, Brandt, Shen and Sclaroff, *Top-down Neural Attention by
   Excitation Backprop*, ECCV 2016 (the pointing game); TorchRay's benchmark,
   https://github.com/facebookresearch/TorchRay.
"""

from .cascading_randomisation import (
    CascadeResult,
    cascading_randomisation,
    randomisation_order,
    reinitialise_,
)
from .class_sensitivity import ClassSensitivityResult, class_sensitivity
from .image_recovery import image_recovery
from .input_shift import ShiftedInputConv2d, ShiftResult, input_shift, shift_compensated
from .plots import plot_cascade, plot_class_sensitivity
from .pointing_game import PointingResult, pointing_game
from .reference import ReferenceTable, html_table, reference_table

__all__ = [
    "CascadeResult",
    "ClassSensitivityResult",
    "PointingResult",
    "ReferenceTable",
    "ShiftResult",
    "ShiftedInputConv2d",
    "cascading_randomisation",
    "class_sensitivity",
    "html_table",
    "image_recovery",
    "input_shift",
    "plot_cascade",
    "plot_class_sensitivity",
    "pointing_game",
    "randomisation_order",
    "reference_table",
    "reinitialise_",
    "shift_compensated",
]
