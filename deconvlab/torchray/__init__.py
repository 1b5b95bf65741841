r"""TorchRay's API for gradient, DeConvNet and guided backprop, under TorchRay's own module paths.

TorchRay code for these methods runs after replacing ``torchray`` by
``deconvlab.torchray`` in its imports, nothing else::

    from deconvlab.torchray.attribution.deconvnet import deconvnet   # was: from torchray.attribution...
    from deconvlab.torchray.benchmark import get_example_data, plot_example

=================================  ==============================================================
module                             holds (as in TorchRay 1.0.0.2)
=================================  ==============================================================
:mod:`.attribution.common`         ``saliency``, ``Patch``, ``Probe``, ``ReLUContext``,
                                   ``NullContext``, ``attach_debug_probes``,
                                   ``get_backward_gradient``, ``get_module``,
                                   ``get_pointing_gradient``, ``gradient_to_saliency``,
                                   ``resize_saliency``, and ``imsmooth``
:mod:`.attribution.gradient`       ``gradient``
:mod:`.attribution.deconvnet`      ``DeConvNetContext``, ``DeConvNetReLU``, ``deconvnet``
:mod:`.attribution.guided_backprop`  ``GuidedBackpropContext``, ``GuidedBackpropReLU``,
                                   ``guided_backprop``
:mod:`.benchmark`                  ``get_example_data``, ``plot_example``
:mod:`.utils`                      ``imsmooth``, ``imsc``, ``get_device``
=================================  ==============================================================

Same signatures, defaults and return values as TorchRay 1.0.0.2, side effects included:
after ``saliency`` the caller's input holds the signed signal in ``.grad`` (when the map
is taken at the input, with ``debug=True``, or when the input requires grad), debug probes
carry each module's output and its gradient, targets may be ints, lists, tensors (0-d
too) or seeds, and a ``saliency_layer`` that runs several times is taken at its last call.
The methods run on deconvlab's rules (:mod:`deconvlab.rules`) and forward pipeline
(:mod:`deconvlab.recording`). TorchRay is CC BY-NC 4.0: none of its code is copied here;
``tests/test_torchray*.py`` run TorchRay itself and compare.

Differences from TorchRay
-------------------------
1. **Guided backprop at** :math:`x = 0`: the gate is closed, as the equation that TorchRay
   documents says, :math:`\operatorname{ReLU}^*(x, p) = p \cdot [x > 0] \cdot [p > 0]`;
   TorchRay's ``GuidedBackpropReLU`` lets the signal through there.
2. **Every ReLU spelling, nothing patched**: the contexts are :class:`deconvlab.backward_rule`
   objects (per thread), so ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``Tensor.relu`` and their
   in-place forms all get the rule, and in-place ReLUs stay in place. TorchRay swaps
   ``torch.relu`` and ``torch.relu_`` for its function, so ``Tensor.relu`` keeps the plain
   gradient, and in-place ReLUs run out of place. ``ReLUContext(relu_func)`` takes
   ``relu_func``'s backward; the forward stays :math:`\max(x, 0)`.
3. **A layer that an in-place operation overwrites** (a convolution followed by
   ``ReLU(inplace=True)``, as VGG16's ``features.28``): ``gradient_to_saliency`` gets the
   layer's own output and its gradient. With the plain gradient, TorchRay raises ("a leaf
   Variable that requires grad is being used in an in-place operation") or, when the input
   requires grad, hands over the ReLU's output and gradient instead.
4. **Resize modes**: ``"nearest"``, ``"nearest-exact"`` and ``"area"`` work; TorchRay always
   passes ``align_corners=False``, which current PyTorch refuses for them.
5. ``imsmooth`` (so ``smooth``) also works on float64 tensors, and ignores ``padding_value``
   for the ``"reflect"`` and ``"replicate"`` modes; TorchRay's raises on current PyTorch in
   both cases. On float32 it gives TorchRay's numbers bit for bit.
6. **Module modes**: every module runs in eval mode and gets its own ``training`` flag back;
   TorchRay switches only a model whose own flag is training, and afterwards calls
   ``model.train()``, which sets every submodule to training.
7. **Debug probes** are detached when ``saliency`` returns, and hold copies (leaves with
   ``requires_grad=True``) of the values and gradients that TorchRay's hold; TorchRay's stay
   attached, with the model's in-place ReLUs switched off, until removed or garbage-collected.
   Likewise ``gradient_to_saliency`` gets a copy of the layer's output (the input itself at
   the input).
8. **Offline example data**: ``get_example_data()`` (``arch="vgg16"``) gives the shipped
   teaching model, standing in for TorchRay's downloaded VGG16, with a two-object image of
   the shapes dataset standing in for its dog-and-cat photo; ``shape`` is counted in VGG16
   pixels (224 gives the teaching model's 64). Other torchvision names give that
   pretrained model and a cat photo. ``plot_example`` names ids below 6 after the shapes
   classes.
9. **Errors** are ``ValueError``, ``TypeError`` or ``RuntimeError`` naming the problem where
   TorchRay asserts; a ``saliency_layer`` module outside the model is refused.

References
----------
TorchRay, https://github.com/facebookresearch/TorchRay (``torchray.attribution``).
"""
