r"""Grad-CAM and Guided Grad-CAM: compositions of the forward pipeline and two backward rules.

Grad-CAM [GRADCAM]_ weighs the feature maps :math:`A^k` of a convolutional layer by the
average gradient of the class score :math:`y^c` over their positions,

.. math::

    \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
    L^c_{\text{Grad-CAM}} = \operatorname{ReLU}\Big(\sum_k \alpha_k^c A^k\Big),

a coarse map at the layer's resolution, upsampled to the image. Guided Grad-CAM multiplies it,
pixel by pixel, with guided backpropagation (``p · [x > 0] · [p > 0]`` at every ReLU):

.. math::

    L^c_{\text{Guided Grad-CAM}} = R^c_{\text{guided}} \odot \operatorname{up}(L^c_{\text{Grad-CAM}}).

Both factors come from ONE forward pass (:func:`deconvlab.record` with both rules and a probe
at the layer) and two backward passes: the gradient rule down to the layer's output, then
guided backpropagation down to the input. Captum's ``GuidedGradCam`` runs the model twice.

References
----------
.. [GRADCAM] Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra, *Grad-CAM: Visual Explanations
   from Deep Networks via Gradient-based Localization*, ICCV 2017,
   https://doi.org/10.1109/ICCV.2017.74.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, nn

from .attribution import Layer, record
from .checks import Target, as_bool, as_choice, check_model, find_layer
from .escapes import eager_module
from .model_state import removing
from .recording import LayerProbe, Recording

__all__ = ["UPSAMPLE_MODES", "grad_cam", "guided_grad_cam"]

#: Interpolation modes for ``upsample=``, with the number of spatial dimensions each needs (None: any).
UPSAMPLE_MODES: dict[str, int | None] = {
    "nearest": None,
    "nearest-exact": None,
    "area": None,
    "linear": 1,
    "bilinear": 2,
    "bicubic": 2,
    "trilinear": 3,
}


class _ActivationProbe(LayerProbe):
    """A :class:`~deconvlab.recording.LayerProbe` that also keeps a copy of the layer's output.

    The copy is :math:`A` as the layer produced it, even if a later in-place op (an in-place ReLU
    right after a convolution) overwrites the tensor. :meth:`restart` forgets an aborted pass.
    """

    def reset(self) -> None:
        super().reset()
        self.value: Tensor | None = None

    def __call__(self, module: nn.Module, args: object, output: object) -> None:
        super().__call__(module, args, output)
        assert isinstance(output, Tensor)  # checked by LayerProbe
        self.value = output.detach().clone()

    def restart(self, module: nn.Module, args: object) -> None:
        """Forward pre-hook of the whole model: a new forward pass begins (the pipeline may rerun one)."""
        self.reset()

    def activation(self) -> Tensor:
        """:math:`A`, shaped ``(N, C, *spatial)``; refuses a layer without spatial dimensions."""
        output = self.checked_output()
        if output.dim() < 3:
            raise ValueError(
                f"layer {self.name!r} gives an output of shape {tuple(output.shape)}, without spatial "
                "dimensions; Grad-CAM averages the gradient over the positions of a feature map "
                "(N, C, H, W): choose a convolutional layer, usually the last one"
            )
        assert self.value is not None
        return self.value


def _check_layer_given(model: nn.Module, layer: Layer) -> None:
    if layer is not None:
        return
    convolutions = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    hint = f", e.g. layer={convolutions[-1]!r} (the last convolution)" if convolutions else ""
    raise TypeError(
        f"layer is None: Grad-CAM needs the convolutional layer whose feature maps it weighs{hint}"
    )


@contextmanager
def _probing(model: nn.Module, layer: Layer) -> Iterator[_ActivationProbe]:
    """A probe at ``layer`` of ``model`` for the block; the hooks are removed on exit."""
    check_model(model)
    model = eager_module(model)  # torch.compile(model): the module that record runs
    _check_layer_given(model, layer)
    assert layer is not None
    name, module = find_layer(model, layer)
    probe = _ActivationProbe(name, module, stop=False)
    with removing([]) as handles:
        # Each extend is one C-level call: an interrupt cannot fall between registering and keeping.
        handles.extend(map(nn.Module.register_forward_hook, [module], [probe]))
        handles.extend(map(nn.Module.register_forward_pre_hook, [model], [probe.restart]))
        yield probe


def _check_upsample(upsample: object, activation: Tensor, x: Tensor, allow_none: bool) -> str | None:
    """``upsample`` checked against the spatial dimensions of the layer's output and of ``x``."""
    if upsample is None and allow_none:
        return None
    mode = as_choice("upsample", upsample, list(UPSAMPLE_MODES))
    spatial, needed = activation.dim() - 2, UPSAMPLE_MODES[mode]
    if needed is not None and needed != spatial:
        fits = "'bilinear'" if spatial == 2 else "'linear'" if spatial == 1 else "'trilinear'"
        raise ValueError(
            f"upsample={mode!r} needs a layer output with {needed} spatial dimension(s), but the "
            f"layer's has {spatial}, shape {tuple(activation.shape)}; use {fits} or 'nearest'"
        )
    if x.dim() - 2 != spatial:
        raise ValueError(
            f"x has shape {tuple(x.shape)} and the layer's output {tuple(activation.shape)}: their "
            "spatial dimensions do not correspond, so the map cannot be upsampled onto x"
            + ("; pass upsample=None" if allow_none else "")
        )
    return mode


def _upsample(cam: Tensor, x: Tensor, mode: str | None) -> Tensor:
    """``cam`` interpolated to ``x``'s spatial size (``mode`` None: left at the layer's resolution)."""
    if mode is None:
        return cam
    corners = False if UPSAMPLE_MODES[mode] is not None else None  # the modes that take align_corners
    return F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode, align_corners=corners)


def _weighted_maps(activation: Tensor, gradient: Tensor, relu: bool) -> Tensor:
    r"""``ReLU(Σ_k α_k A^k)`` with :math:`\alpha_k` the spatial mean of :math:`\partial y / \partial A^k`."""
    spatial = tuple(range(2, gradient.dim()))
    weights = gradient.mean(dim=spatial, keepdim=True)  # α_k, shape (N, C, 1, 1)
    cam = (weights * activation).sum(dim=1, keepdim=True)  # Σ_k α_k A^k, shape (N, 1, H, W)
    return cam.clamp(min=0) if relu else cam  # clamp, not F.relu: no backward rule may intercept it


def _layer_cam(recorded: Recording, probe: _ActivationProbe, relu: bool, keep_graph: bool) -> Tensor:
    """Grad-CAM at the layer's resolution: the gradient rule's backward pass down to the probed layer."""
    activation = probe.activation()
    at_layer = Recording(recorded.slot, recorded.rules, recorded.output, recorded.seed, probe.wrt())
    gradient = at_layer.signal("gradient", keep_graph=keep_graph)
    return _weighted_maps(activation, gradient, relu)


def grad_cam(
    model: nn.Module,
    x: Tensor,
    target: Target,
    layer: Layer,
    *,
    relu: bool = True,
    upsample: str | None = "bilinear",
) -> Tensor:
    r"""Grad-CAM [GRADCAM]_: the feature maps of ``layer`` weighed by their average gradient.

    .. math::

        \alpha_k^c = \frac{1}{Z} \sum_{i,j} \frac{\partial y^c}{\partial A^k_{ij}}, \qquad
        L^c = \operatorname{ReLU}\Big(\sum_k \alpha_k^c A^k\Big)

    One forward pass and one backward pass of the plain gradient, from the target's output
    down to ``layer`` only (whatever rule is active around the call).

    Parameters
    ----------
    model, x, target
        As in :func:`deconvlab.attribute`.
    layer : str or nn.Module
        The layer whose output :math:`A` is weighed, ``(N, C, H, W)``; usually the last
        convolutional layer (or block). A layer followed by an in-place ReLU gives its own output,
        before the ReLU, as Captum's ``LayerGradCam`` does.
    relu : bool, default True
        Keep only the positive part, as the paper does (Captum's ``relu_attributions=True``);
        False gives the signed sum.
    upsample : str or None, default "bilinear"
        Interpolate the map to ``x``'s spatial size with this ``torch.nn.functional.interpolate`` mode
        (``align_corners=False``), as the paper does with bilinear; one of :data:`UPSAMPLE_MODES`.
        None keeps the layer's resolution. (Captum's ``GuidedGradCam`` defaults to ``"nearest"``.)

    Returns
    -------
    Tensor
        ``(N, 1, H, W)``: ``x``'s spatial size, or the layer's with ``upsample=None``; detached.

    Raises
    ------
    TypeError
        As :func:`deconvlab.attribute`; ``layer`` is None (the message names the model's last
        convolution); ``relu`` is no bool; ``upsample`` is no string.
    ValueError
        As :func:`deconvlab.attribute`; an unknown layer, or one whose output has no spatial
        dimensions (a linear layer); an unknown ``upsample`` mode or one that does not fit the
        layer's dimensions.
    RuntimeError
        The layer does not run, runs more than once, or does not influence the output.

    Examples
    --------
    >>> heat = dl.grad_cam(model, x, 3, layer="features.28")       # doctest: +SKIP
    """
    relu = as_bool("relu", relu)
    with _probing(model, layer) as probe:
        recorded = record(model, x, target, rules=["gradient"])
    mode = _check_upsample(upsample, probe.activation(), x, allow_none=True)
    return _upsample(_layer_cam(recorded, probe, relu, keep_graph=False), x, mode)


def guided_grad_cam(
    model: nn.Module, x: Tensor, target: Target, layer: Layer, *, upsample: str = "bilinear"
) -> Tensor:
    r"""Guided Grad-CAM [GRADCAM]_: guided backpropagation times the upsampled Grad-CAM map.

    .. math::

        L^c = R^c_{\text{guided}} \odot \operatorname{up}\Big(\operatorname{ReLU}\big(\textstyle
        \sum_k \alpha_k^c A^k\big)\Big)

    with :math:`R_{\text{guided}}` the guided-backpropagation signal (ReLU* ``p · [x > 0] · [p > 0]``)
    and :math:`\alpha_k^c` Grad-CAM's weights (see :func:`grad_cam`). ONE forward pass serves
    both factors; then one backward pass under the gradient rule down to ``layer`` and one under
    guided backpropagation down to the input.

    Parameters
    ----------
    model, x, target
        As in :func:`deconvlab.attribute`.
    layer : str or nn.Module
        Grad-CAM's layer, as in :func:`grad_cam`.
    upsample : str, default "bilinear"
        How the Grad-CAM map is brought to ``x``'s size (see :func:`grad_cam`); Captum's
        ``GuidedGradCam.attribute(..., interpolate_mode=...)`` defaults to ``"nearest"``.

    Returns
    -------
    Tensor
        Shaped like ``x``, detached.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As :func:`grad_cam` (``upsample=None`` is refused: the two factors must have one size).
    """
    with _probing(model, layer) as probe:
        recorded = record(model, x, target, rules=["gradient", "guided_backprop"])
    mode = _check_upsample(upsample, probe.activation(), x, allow_none=False)
    cam = _upsample(_layer_cam(recorded, probe, relu=True, keep_graph=True), x, mode)
    guided = recorded.signal("guided_backprop", keep_graph=False)
    return guided * cam
