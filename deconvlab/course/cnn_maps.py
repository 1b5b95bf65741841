r"""Checkers for notebook 02, *Three rules on a real CNN*.

The four exercises, in the order the notebook asks them:

* **2.1** predict how the three signals compare at the output of the last ReLU
  (:func:`check_last_relu`);
* **2.2** write guided backpropagation with your own hooks on the ``nn.ReLU`` modules and compare
  it with :func:`deconvlab.attribute` (:func:`check_guided_backprop`);
* **2.3** predict which rule puts the largest share of its energy on the object, then measure it
  with :func:`deconvlab.metrics.mask_energy_fraction` (:func:`check_energy_on_object`);
* **2.4** compose Guided Grad-CAM by hand: guided backprop times the upsampled Grad-CAM map
  (:func:`check_guided_grad_cam`).

Every rule differs from the gradient in the backward of ReLU only, with ``x`` the ReLU's input
and ``p`` the signal from above: gradient ``p · [x > 0]``, DeConvNet ``p · [p > 0]``, guided
backprop ``p · [x > 0] · [p > 0]``. :data:`solutions` holds the notebook's model answers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attribution import attribute
from ..cam import grad_cam, guided_grad_cam
from ..metrics import energy_concentration, mask_energy_fraction
from ..rules import BUILTIN_NAMES, get_rule
from .feedback import Wrong, call_answer, checker, wrong

__all__ = [
    "check_energy_on_object",
    "check_guided_backprop",
    "check_guided_grad_cam",
    "check_last_relu",
    "solutions",
]

_LABELS = {"gradient": "the gradient", "deconvnet": "DeConvNet", "guided_backprop": "guided backprop"}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _letter(answer: object, choices: str) -> str:
    """The student's multiple-choice answer as one lower-case letter, or a sentence saying why not."""
    text = str(answer).strip().strip("()").strip().lower() if isinstance(answer, str) else ""
    if len(text) != 1 or text not in choices:
        raise wrong(
            f'Answer with one of the letters {", ".join(choices)} (a string such as "a"), got {answer!r}.'
        )
    return text


def _as_map(answer: object, what: str, like: Tensor) -> Tensor:
    """``answer`` as a float tensor shaped like ``like``, or a sentence saying what is off."""
    if not isinstance(answer, Tensor):
        raise wrong(
            f"{what} should be a tensor shaped like the images, {tuple(like.shape)}, got a "
            f"{type(answer).__name__}."
        )
    if tuple(answer.shape) != tuple(like.shape):
        raise wrong(
            f"{what} has shape {tuple(answer.shape)}, but it should have the images' shape "
            f"{tuple(like.shape)}."
        )
    if not answer.is_floating_point():
        raise wrong(f"{what} holds {answer.dtype} values; a map holds real numbers (float).")
    return answer.detach().to(like.dtype)


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(b.abs().max()) or 1.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * scale))


def _which(answer: Tensor, candidates: Mapping[str, Tensor]) -> str | None:
    """The first candidate ``answer`` equals (to float tolerance), or None."""
    return next((name for name, value in candidates.items() if _close(answer, value)), None)


def _hook_count(model: nn.Module) -> int:
    dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(module, name, {})) for module in model.modules() for name in dicts)


def _sample() -> tuple[nn.Module, Tensor, Tensor]:
    """The teaching model and four held-out images with their labels (fixed: the checkers' own data)."""
    from ..data import shapes
    from ..models import teaching_model
    from ..train import HELDOUT_SEED

    data = shapes(4, seed=HELDOUT_SEED)
    return teaching_model(), data.images, data.labels


# --------------------------------------------------------------------------------------------
# 2.1 the last ReLU
# --------------------------------------------------------------------------------------------

_LAST_RELU = {
    "b": "No sign flips anywhere: nothing between features.12 and the score (max-pooling, averaging, the "
    "linear layer) depends on the rule, so the three signals there are the same, sign included.",
    "c": "DeConvNet and guided backprop clip negative p only in the backward of a ReLU, and the signal at "
    "features.12's output has not been through any ReLU's backward yet: above it there are only "
    "max-pooling, averaging and the linear layer.",
    "d": "The rules differ only in the backward of ReLU, and no ReLU lies between features.12's output "
    "and the score (only max-pooling, averaging and the linear layer): nothing has told the rules apart yet.",
}


@checker("2.1 Predict the signals at the last ReLU")
def check_last_relu(answer: object) -> str:
    """Exercise 2.1: how do the three signals at ``features.12``'s output compare? (one letter)

    The answer is ``"a"``: identical, because no ReLU lies between that output and the score.
    """
    letter = _letter(answer, "abcd")
    if letter != "a":
        raise wrong(_LAST_RELU[letter])
    return (
        "Right: above features.12 there is no ReLU, so no rule has acted yet and the three signals are "
        "identical."
    )


# --------------------------------------------------------------------------------------------
# 2.2 guided backprop with your own hooks
# --------------------------------------------------------------------------------------------


def _guided_backprop(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    """Model answer of 2.2: guided backprop from forward hooks on the ``nn.ReLU`` modules.

    Each hook registers a tensor hook on the ReLU's output, which receives the signal ``p`` from
    above and passes on ``p · [p > 0]``; autograd's own ReLU backward then applies ``[x > 0]``.
    """
    handles = []

    def clip_negative_p(module: nn.Module, inputs: Any, output: Tensor) -> None:
        output.register_hook(lambda p: p.clamp(min=0))

    for module in model.modules():
        if isinstance(module, nn.ReLU):
            handles.append(module.register_forward_hook(clip_negative_p))
    try:
        x = x.detach().clone().requires_grad_(True)
        scores = model(x)
        chosen = scores.gather(1, target.view(-1, 1)).sum()  # each image's score for its own target
        (signal,) = torch.autograd.grad(chosen, x)
    finally:
        for handle in handles:
            handle.remove()
    return signal


_IN_PLACE_HINT = (
    " The teaching model's ReLUs are in-place (inplace=True), which full backward hooks refuse: use a "
    "forward hook that registers a hook on the ReLU's output tensor, or set module.inplace = False first."
)


_RETURNS_HANDLE_HINT = (
    " Your forward hook returns what output.register_hook(...) returned: a forward hook's return value "
    "replaces the module's output, so register the tensor hook in one statement and return nothing."
)


@checker("2.2 Guided backprop with your own hooks")
def check_guided_backprop(my_guided_backprop: Callable[..., Any]) -> str:
    """Exercise 2.2: ``my_guided_backprop(model, x, target)`` against ``dl.attribute``.

    Run on a copy of the teaching model and four held-out images, with one target class per
    image. A wrong map is matched against the usual mistakes: the plain gradient (negative ``p``
    not clipped), DeConvNet (the forward gate ``[x > 0]`` dropped), the final map clipped
    instead of each ReLU's signal, all targets summed for every image.
    """
    model, x, target = _sample()
    mine = copy.deepcopy(model)
    before = _hook_count(mine)
    try:
        answer = call_answer(
            my_guided_backprop,
            mine,
            x.clone(),
            target.clone(),
            what="your my_guided_backprop(model, x, target)",
        )
    except Wrong as error:
        message = str(error)
        if "inplace" in message.replace("-", "").replace(" ", "").lower():
            message += _IN_PLACE_HINT
        elif "RemovableHandle" in message:
            message += _RETURNS_HANDLE_HINT
        raise wrong(message) from None
    if _hook_count(mine) != before:
        raise wrong(
            "Your function leaves hooks on the model: every later backward pass would be changed too. Keep "
            "the handles that register_..._hook returns and call handle.remove() (in a finally: block)."
        )
    answer = _as_map(answer, "Your map", x)
    maps = attribute(model, x, target, rules=list(BUILTIN_NAMES))
    if _close(answer, maps["guided_backprop"]):
        return "Your hooks give exactly deconvlab's guided backprop: p · [x > 0] · [p > 0] at every ReLU."
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    every_target = (
        F.one_hot(target, classes).sum(0).expand(len(target), -1).to(x.dtype)
    )  # all targets, every image
    mistakes = {
        "gradient": maps["gradient"],
        "deconvnet": maps["deconvnet"],
        "negated": -maps["guided_backprop"],
        "clipped at the end": maps["gradient"].clamp(min=0),
        "all targets": attribute(model, x, every_target, rule="guided_backprop"),
        "zero": torch.zeros_like(x),
    }
    found = _which(answer, mistakes)
    if found == "gradient":
        raise wrong(
            "Your map equals the gradient: your hook does not clip negative p. Guided backprop passes p · "
            "[x > 0] · [p > 0]: set the negative part of the signal arriving at each ReLU to zero."
        )
    if found == "deconvnet":
        raise wrong(
            "Your map equals DeConvNet's: you clip negative p but drop the forward gate [x > 0]. If you "
            "replace the ReLU's grad_input by the clipped grad_output, clip the grad_input instead (it "
            "already holds p · [x > 0])."
        )
    if found == "negated":
        raise wrong(
            "Your map is guided backprop with the sign flipped: backpropagate the score itself, not its "
            "negative."
        )
    if found == "clipped at the end":
        raise wrong(
            "You clipped the final map, not the signal at each ReLU: guided backprop sets negative p to "
            "zero at every ReLU on the way down, which changes what reaches the layers below."
        )
    if found == "all targets":
        raise wrong(
            "Your map adds up every image's target class for every image: with one target per image, take "
            "scores[range(N), target] (or scores.gather(1, target[:, None])) before summing."
        )
    if found == "zero":
        raise wrong(
            "Your map is zero everywhere: did you return x.grad before calling backward, or clip every p?"
        )
    raise wrong(
        "Your map differs from dl.attribute(model, x, target, rule='guided_backprop') (largest difference "
        f"{float((answer - maps['guided_backprop']).abs().max()):.2g}): check that every nn.ReLU gets the "
        "hook and that it passes p · [p > 0]."
    )


# --------------------------------------------------------------------------------------------
# 2.3 predict, then measure: energy on the object
# --------------------------------------------------------------------------------------------

_WHY_NOT = {
    "gradient": "the gradient passes negative as well as positive signal at every unit that fired, and much "
    "of it lands on the background clutter",
    "deconvnet": "DeConvNet ignores whether a unit fired (it never reads x), so it also passes signal "
    "through units that were off, which spreads over the clutter",
}


def _rule_name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise wrong(f"{what} should be a rule's name, a string such as 'gradient', got {value!r}.")
    try:
        name = get_rule(value).name
    except (ValueError, TypeError):
        name = ""
    if name not in BUILTIN_NAMES:
        raise wrong(f"{what} should be one of {', '.join(map(repr, BUILTIN_NAMES))}, got {value!r}.")
    return name


@checker("2.3 Predict, then measure: energy on the object")
def check_energy_on_object(
    prediction: object, energy: object, maps: Mapping[str, Tensor], masks: Tensor
) -> str:
    """Exercise 2.3: the predicted rule, and the measured shares ``mask_energy_fraction(maps[rule], masks)``.

    ``energy`` must hold, for each of the three rules, one share per image; the prediction is
    then compared with the rule whose median share is the highest.
    """
    predicted = _rule_name(prediction, "Your prediction")
    if not isinstance(energy, Mapping):
        raise wrong(
            f"energy should be a dict with one entry per rule ({', '.join(map(repr, BUILTIN_NAMES))}), got "
            f"a {type(energy).__name__}."
        )
    missing = [rule for rule in BUILTIN_NAMES if rule not in energy]
    if missing:
        raise wrong(f"energy has no entry for {', '.join(map(repr, missing))}: measure all three rules.")
    count = len(masks)
    for rule in BUILTIN_NAMES:
        value = energy[rule]
        shares = (
            torch.as_tensor(value, dtype=torch.float32) if not isinstance(value, Tensor) else value.float()
        )
        if shares.dim() == 0:
            raise wrong(
                f"energy[{rule!r}] is one number; keep one share per image ({count} values): the median "
                "comes after."
            )
        if tuple(shares.shape) != (count,):
            raise wrong(
                f"energy[{rule!r}] has shape {tuple(shares.shape)}; it should hold one share per image, "
                f"({count},)."
            )
        right = mask_energy_fraction(maps[rule], masks)
        if _close(shares, right):
            continue
        if _close(shares, 1 - right):
            raise wrong(
                f"energy[{rule!r}] is the share of the energy outside the mask; measure the share inside it."
            )
        if _close(shares, energy_concentration(maps[rule])):
            raise wrong(
                f"energy[{rule!r}] holds energy_concentration (the share of the brightest 5% of pixels), "
                "not the share inside the mask: use mask_energy_fraction(maps[rule], masks)."
            )
        if _close(shares, masks.float().mean((1, 2))):
            raise wrong(
                f"energy[{rule!r}] holds the masks' areas (the chance level), not the map's energy inside "
                "them."
            )
        raise wrong(f"energy[{rule!r}] differs from mask_energy_fraction(maps[{rule!r}], masks).")
    medians = {rule: float(torch.as_tensor(energy[rule]).float().median()) for rule in BUILTIN_NAMES}
    best = max(medians, key=medians.__getitem__)
    table = ", ".join(f"{_LABELS[rule]} {medians[rule]:.2f}" for rule in BUILTIN_NAMES)
    if predicted != best:
        reason = f": {_WHY_NOT[predicted]}" if best == "guided_backprop" and predicted in _WHY_NOT else ""
        raise wrong(
            f"Your measurement is right, but your prediction is not: {_LABELS[best]} has the highest median "
            f"share on the object, not {_LABELS[predicted]} (medians: {table}){reason}."
        )
    return f"Right, and measured right: median shares on the object are {table}."


# --------------------------------------------------------------------------------------------
# 2.4 Guided Grad-CAM by hand
# --------------------------------------------------------------------------------------------


def _guided_grad_cam(model: nn.Module, x: Tensor, target: Tensor, layer: str) -> Tensor:
    """Model answer of 2.4: guided backprop times the Grad-CAM map, upsampled bilinearly to the image."""
    cam = grad_cam(model, x, target, layer=layer, upsample=None)  # (N, 1, h, w) at the layer's resolution
    upsampled = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    guided = attribute(model, x, target, rule="guided_backprop")
    return guided * upsampled


@checker("2.4 Guided Grad-CAM by hand")
def check_guided_grad_cam(
    answer: object, model: nn.Module, x: Tensor, target: Any, layer: str = "features.12"
) -> str:
    """Exercise 2.4: the student's Guided Grad-CAM map against :func:`deconvlab.guided_grad_cam`.

    A wrong map is matched against the usual mistakes: another rule as the first factor, nearest
    or ``align_corners=True`` upsampling, the CAM without its ReLU, one factor alone, a sum
    instead of a product.
    """
    if isinstance(answer, Tensor) and answer.dim() == 4 and answer.shape[1] == 1 and x.shape[1] != 1:
        raise wrong(
            f"Your map has one channel, shape {tuple(answer.shape)}: that is the CAM alone. Multiply guided "
            f"backprop's map {tuple(x.shape)} by it (the CAM's single channel broadcasts)."
        )
    if isinstance(answer, Tensor) and answer.shape[-2:] != x.shape[-2:]:
        raise wrong(
            f"Your map is {tuple(answer.shape[-2:])} pixels, the images {tuple(x.shape[-2:])}: upsample the "
            "CAM to the image's size (F.interpolate(cam, size=x.shape[-2:], mode='bilinear')) before "
            "multiplying."
        )
    answer = _as_map(answer, "Your map", x)
    reference = guided_grad_cam(model, x, target, layer)
    if _close(answer, reference):
        return (
            "Your product equals dl.guided_grad_cam: guided backprop's detail, weighted by where Grad-CAM "
            "looks."
        )
    maps = attribute(model, x, target, rules=list(BUILTIN_NAMES))
    coarse = grad_cam(model, x, target, layer=layer, upsample=None)
    signed = grad_cam(model, x, target, layer=layer, relu=False)
    size = x.shape[-2:]
    bilinear = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    mistakes = {
        "gradient": maps["gradient"] * bilinear,
        "deconvnet": maps["deconvnet"] * bilinear,
        "nearest": maps["guided_backprop"] * F.interpolate(coarse, size=size, mode="nearest"),
        "corners": maps["guided_backprop"]
        * F.interpolate(coarse, size=size, mode="bilinear", align_corners=True),
        "no relu": maps["guided_backprop"] * signed,
        "guided alone": maps["guided_backprop"],
        "sum": maps["guided_backprop"] + bilinear,
    }
    found = _which(answer, mistakes)
    if found in ("gradient", "deconvnet"):
        raise wrong(
            f"Your first factor is {_LABELS[found]}'s map; Guided Grad-CAM multiplies guided backprop's map "
            "(rule='guided_backprop') by the CAM."
        )
    if found == "nearest":
        raise wrong(
            "You upsampled the CAM with mode='nearest', which gives blocks; Grad-CAM's paper (and "
            "dl.guided_grad_cam here) interpolates bilinearly: mode='bilinear', align_corners=False."
        )
    if found == "corners":
        raise wrong(
            "You upsampled with align_corners=True, which stretches the CAM's grid onto the image's corner "
            "pixels; use align_corners=False, as dl.guided_grad_cam does."
        )
    if found == "no relu":
        raise wrong(
            "Your CAM keeps its negative part: Grad-CAM is ReLU(Σ_k α_k A^k), so regions that speak "
            "against the class get weight 0, not a negative weight (keep dl.grad_cam's default relu=True)."
        )
    if found == "guided alone":
        raise wrong("Your map is guided backprop alone: multiply it by the upsampled Grad-CAM map.")
    if found == "sum":
        raise wrong("You added the two maps; Guided Grad-CAM multiplies them, pixel by pixel.")
    raise wrong(
        f"Your map differs from dl.guided_grad_cam(model, x, target, {layer!r}) (largest difference "
        f"{float((answer - reference).abs().max()):.2g}): check the layer of the CAM and the target of both "
        "factors."
    )


#: The notebook's model answers: ``last_relu`` (2.1), ``guided_backprop`` (2.2),
#: ``most_on_object`` (2.3), ``guided_grad_cam`` (2.4).
solutions = SimpleNamespace(
    last_relu="a",
    guided_backprop=_guided_backprop,
    most_on_object="guided_backprop",
    guided_grad_cam=_guided_grad_cam,
)
