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
  TorchRay's protocol and the centre baseline;
* :mod:`.guided_depth` -- where image recovery comes from: the guided rule from ReLU layer
  ``k`` upward, a rule map [NIE]_.

Every check computes its maps with one function (:func:`.rule_maps`, one forward pass for
all rules) and measures them with :mod:`deconvlab.metrics`. Besides the rules, it computes
the compositions Adebayo et al. test (:data:`COMPOSITIONS`: ``"grad_cam"``,
``"guided_grad_cam"``, ``"smoothgrad"``), as :class:`MethodOptions` says.
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

from ._maps import COMPOSITION_LABELS, COMPOSITIONS, MethodOptions, last_convolution, rule_maps
from .cascading_randomisation import (
    CascadeResult,
    cascading_randomisation,
    randomisation_order,
    reinitialise_,
)
from .class_sensitivity import ClassSensitivityResult, class_sensitivity
from .guided_depth import (
    GuidedDepthResult,
    guided_from_layer,
    guided_from_layer_maps,
    recovery_by_depth,
    relu_layers,
)
from .image_recovery import image_recovery
from .input_shift import ShiftedInputConv2d, ShiftResult, input_shift, shift_compensated
from .plots import plot_cascade, plot_class_sensitivity
from .pointing_game import PointingResult, pointing_game
from .reference import ReferenceTable, html_table, reference_table

__all__ = [
    "COMPOSITIONS",
    "COMPOSITION_LABELS",
    "CascadeResult",
    "ClassSensitivityResult",
    "GuidedDepthResult",
    "MethodOptions",
    "PointingResult",
    "ReferenceTable",
    "ShiftResult",
    "ShiftedInputConv2d",
    "cascading_randomisation",
    "class_sensitivity",
    "guided_from_layer",
    "guided_from_layer_maps",
    "html_table",
    "image_recovery",
    "input_shift",
    "last_convolution",
    "plot_cascade",
    "plot_class_sensitivity",
    "pointing_game",
    "randomisation_order",
    "recovery_by_depth",
    "reference_table",
    "reinitialise_",
    "relu_layers",
    "rule_maps",
    "shift_compensated",
]
