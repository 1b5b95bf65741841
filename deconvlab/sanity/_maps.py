"""The one place the sanity checks compute maps: the rules (one forward pass per chunk), their compositions.

Besides the backward rules (``"gradient"``, ``"deconvnet"``, ``"guided_backprop"``, any registered
rule), a check may ask for the compositions Adebayo et al. test beside them, under the names of
their table (``deconvlab/reference/sanity_checks_adebayo2018_mnist_cnn.csv``):

* ``"grad_cam"``: :func:`deconvlab.grad_cam` at the model's last convolution;
* ``"guided_grad_cam"``: :func:`deconvlab.guided_grad_cam`, guided backprop times Grad-CAM;
* ``"smoothgrad"``: :func:`deconvlab.smoothgrad` of the gradient, with seeded noise.

How they are computed is a :class:`MethodOptions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..attribution import attribute
from ..cam import grad_cam, guided_grad_cam
from ..smoothing import smoothgrad

__all__ = ["COMPOSITIONS", "COMPOSITION_LABELS", "MethodOptions", "last_convolution", "rule_maps"]

#: The compositions a check can compute beside the rules, named as in Adebayo et al.'s table.
COMPOSITIONS = ("grad_cam", "guided_grad_cam", "smoothgrad")

#: How figures title them (the rules' labels come from :class:`deconvlab.Rule`).
COMPOSITION_LABELS = {
    "grad_cam": "Grad-CAM",
    "guided_grad_cam": "Guided Grad-CAM",
    "smoothgrad": "SmoothGrad",
}


@dataclass(frozen=True)
class MethodOptions:
    """How the sanity checks compute Grad-CAM, Guided Grad-CAM and SmoothGrad.

    Attributes
    ----------
    cam_layer : str, optional
        Grad-CAM's layer; default :func:`last_convolution` (Selvaraju et al. use the last
        convolutional layer).
    samples : int, default 16
        SmoothGrad's noisy copies per image.
    noise_level : float, default 0.15
        SmoothGrad's noise, a fraction of each image's range (Smilkov et al.: 10-20 %).
    smooth_rule : str, default "gradient"
        The rule SmoothGrad averages (the paper, and Adebayo et al., smooth the gradient).
    seed : int, default 0
        SmoothGrad's noise: the chunk of images that starts at image ``i`` draws it from
        ``torch.Generator().manual_seed(seed + i)``, so the same images get the same noise at
        every stage of a check and for every target.
    """

    cam_layer: str | None = None
    samples: int = 16
    noise_level: float = 0.15
    smooth_rule: str = "gradient"
    seed: int = 0


def last_convolution(model: nn.Module) -> str:
    """Path of the model's last ``nn.Conv2d`` in registration order (Grad-CAM's usual layer)."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
    if not names:
        raise ValueError(
            f"the {type(model).__name__} has no nn.Conv2d, so Grad-CAM has no layer to weigh; "
            "give MethodOptions(cam_layer=...) or leave 'grad_cam' and 'guided_grad_cam' out"
        )
    return names[-1]


def _composition(
    method: str, model: nn.Module, images: Tensor, targets: Tensor, options: MethodOptions, start: int
) -> Tensor:
    if method == "smoothgrad":
        generator = torch.Generator(device=images.device).manual_seed(options.seed + start)
        return smoothgrad(
            model,
            images,
            targets,
            options.smooth_rule,
            samples=options.samples,
            noise_level=options.noise_level,
            generator=generator,
        )
    layer = options.cam_layer if options.cam_layer is not None else last_convolution(model)
    if method == "grad_cam":
        return grad_cam(model, images, targets, layer)
    return guided_grad_cam(model, images, targets, layer)


def rule_maps(
    model: nn.Module,
    images: Tensor,
    targets,
    rules: Sequence[str],
    chunk: int = 16,
    options: MethodOptions | None = None,
) -> dict[str, Tensor]:
    """Every method's map of ``images`` for ``targets``, as ``{method: (N, C, H, W)}``.

    The rules share one :func:`deconvlab.attribute` call (``rules=...``: one forward pass,
    one backward pass per rule) per ``chunk`` images, so memory stays bounded. The
    compositions (:data:`COMPOSITIONS`) are computed chunk by chunk with ``options``;
    Grad-CAM's map has one channel, ``(N, 1, H, W)``.

    Parameters
    ----------
    model : nn.Module
    images : Tensor
        ``(N, C, H, W)``.
    targets : int, sequence or Tensor
        The class explained: one per image, or one for all.
    rules : sequence of str
        Rule names and composition names, in the order of the result.
    chunk : int, default 16
    options : MethodOptions, optional
        How the compositions are computed (default ``MethodOptions()``).
    """
    options = MethodOptions() if options is None else options
    targets = torch.as_tensor(targets)
    if targets.dim() == 0:
        targets = targets.expand(len(images))
    plain = [rule for rule in rules if rule not in COMPOSITIONS]
    parts: dict[str, list[Tensor]] = {rule: [] for rule in rules}
    for i in range(0, len(images), chunk):
        x, t = images[i : i + chunk], targets[i : i + chunk]
        if plain:
            signals = attribute(model, x, t, rules=plain)
            for rule in plain:
                parts[rule].append(signals[rule])
        for method in rules:
            if method in COMPOSITIONS:
                parts[method].append(_composition(method, model, x, t, options, i))
    return {rule: torch.cat(parts[rule]) for rule in rules}
