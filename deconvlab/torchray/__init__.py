"""TorchRay's API for gradient, DeConvNet and guided backprop, under TorchRay's own module paths.

TorchRay code for these methods runs after replacing ``torchray`` by
``deconvlab.torchray`` in its imports, nothing else::

    from deconvlab.torchray.attribution.deconvnet import deconvnet
    from deconvlab.torchray.benchmark import get_example_data, plot_example

==========================================  ==================================================
module                                      holds
==========================================  ==================================================
:mod:`.attribution.common`                  ``saliency``, contexts, probes, seeds, resizing
:mod:`.attribution.gradient`                ``gradient``
:mod:`.attribution.deconvnet`               ``DeConvNetContext``, ``DeConvNetReLU``, ``deconvnet``
:mod:`.attribution.guided_backprop`         ``GuidedBackpropContext``, ``GuidedBackpropReLU``,
                                            ``guided_backprop``
:mod:`.benchmark`                           ``get_example_data``, ``plot_example`` (offline)
:mod:`.utils`                               ``imsmooth``
==========================================  ==================================================

Each method runs on deconvlab's own rules (:mod:`deconvlab.rules`) and forward pipeline
(:mod:`deconvlab.recording`). Where deconvlab differs from TorchRay, it follows the
equations that TorchRay documents: guided backprop closes the gate at :math:`x = 0`
(:math:`\\operatorname{ReLU}^*(x, p) = p \\cdot [x > 0] \\cdot [p > 0]`), where TorchRay's
implementation lets the signal through. TorchRay is CC BY-NC; none of its code is copied
here, its behaviour is compared in the tests.

References
----------
TorchRay, https://github.com/facebookresearch/TorchRay (``torchray.attribution``).
"""
