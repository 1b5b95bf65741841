r"""Checkers for notebook 03, *DeConvNet: looking inside* (Zeiler and Fergus, ECCV 2014).

The four exercises, in the order the notebook asks them:

* **3.1** write unpooling through the switches by hand and check it against the backward of
  max-pooling (:func:`check_unpool`);
* **3.2** predict the DeConvNet projection of a unit of a network without max-pooling, before
  running it (:func:`check_pool_free_projection`);
* **3.3** predict at which layers the DeConvNet and guided-backprop projections of the strongest
  unit are identical (:func:`check_identical_layers`);
* **3.4** find the nine images that activate a channel most, and where (:func:`check_top9`),
  against :func:`deconvlab.zeiler_fergus.channel_maxima`.

The rules differ in the backward of ReLU only, with ``x`` the ReLU's input and ``p`` the signal
from above: gradient ``p · [x > 0]``, DeConvNet ``p · [p > 0]``, guided backprop
``p · [x > 0] · [p > 0]``. :func:`layer_output` gives the feature maps exercise 3.4 works on;
:data:`solutions` holds the notebook's model answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import find_layer
from ..model_state import evaluating
from ..rules import BUILTIN_NAMES, get_rule
from ..zeiler_fergus import channel_maxima, pool_backward_by_autograd
from .feedback import Wrong, call_answer, checker, wrong

__all__ = [
    "TEACHING_RELUS",
    "check_identical_layers",
    "check_pool_free_projection",
    "check_top9",
    "check_unpool",
    "layer_output",
    "solutions",
]

#: The teaching model's five ReLU layers, bottom to top.
TEACHING_RELUS: tuple[str, ...] = ("features.1", "features.4", "features.7", "features.9", "features.12")


@torch.no_grad()
def layer_output(model: nn.Module, images: Tensor, layer: str | nn.Module) -> Tensor:
    """The output of ``layer`` (e.g. a ReLU, ``"features.7"``) for ``images``, in eval mode.

    Parameters
    ----------
    model : nn.Module
    images : Tensor
        ``(N, C, H, W)``.
    layer : str or nn.Module
        A module path of ``model`` or the module.

    Returns
    -------
    Tensor
        The layer's output, e.g. ``(N, channels, h, w)``; a copy, detached.
    """
    _, module = find_layer(model, layer)
    kept: list[Tensor] = []
    handle = module.register_forward_hook(lambda m, args, output: kept.append(output.detach().clone()))
    try:
        with evaluating(model):
            model(images)
    finally:
        handle.remove()
    return kept[-1]


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(b.abs().max()) if b.numel() else 1.0
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6 * (scale or 1.0)))


# --------------------------------------------------------------------------------------------
# 3.1 unpooling through the switches
# --------------------------------------------------------------------------------------------


def _unpool(p: Tensor, switches: Tensor, size: Sequence[int]) -> Tensor:
    """Model answer of 3.1: write each value of ``p`` at its switch, zeros elsewhere (no ``max_unpool2d``)."""
    n, c = p.shape[:2]
    out = p.new_zeros(n, c, size[0] * size[1])  # each (image, channel) plane, flattened row by row
    out.scatter_(2, switches.flatten(2), p.flatten(2))  # a switch is a flat index into its plane
    return out.view(n, c, size[0], size[1])


def _unpool_cases() -> list[tuple[str, Tensor]]:
    """Inputs of the max-pooling the checker unpools: the notebook's 4x4 example, random, odd sizes."""
    small = torch.tensor(
        [[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0], [0.0, 2.0, 6.0, 7.0], [9.0, 1.0, 3.0, 5.0]]]]
    )
    generator = torch.Generator().manual_seed(0)
    return [
        ("the 4x4 example", small),
        ("a random (2, 3, 6, 8) input", torch.randn(2, 3, 6, 8, generator=generator)),
        (
            "a random (1, 2, 7, 9) input (odd sizes: the last row and column are dropped)",
            torch.randn(1, 2, 7, 9, generator=generator),
        ),
    ]


@checker("3.1 Unpooling through the switches")
def check_unpool(unpool: Callable[..., Any]) -> str:
    """Exercise 3.1: ``unpool(p, switches, size)`` against autograd's backward of ``max_pool2d``.

    ``switches`` are the indices :func:`torch.nn.functional.max_pool2d` returns with
    ``return_indices=True``; ``size`` is ``(H, W)`` of the pooling's input. A wrong answer is
    matched against the usual mistakes: the signal copied to the whole window, spread evenly
    over it (average pooling's backward), put at the window's top-left corner, or at the
    transposed position.
    """
    for name, x in _unpool_cases():
        pooled, switches = F.max_pool2d(x, 2, return_indices=True)
        generator = torch.Generator().manual_seed(1)
        p = (
            torch.randn(pooled.shape, generator=generator)
            if x.numel() > 16
            else torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]])
        )
        size = tuple(x.shape[-2:])
        try:
            answer = call_answer(
                unpool, p.clone(), switches.clone(), size, what="your unpool(p, switches, size)"
            )
        except Wrong as error:
            hint = (
                f" On {name} the switches index the pooling input's (H, W) plane, larger than twice the "
                "pooled size: make the output (N, C, H, W) with (H, W) = size "
                "(F.max_unpool2d(..., output_size=size))."
                if "invalid max index" in str(error) or "out of bounds" in str(error)
                else ""
            )
            raise wrong(f"{error}{hint}") from None
        if not isinstance(answer, Tensor):
            raise wrong(f"unpool should return a tensor, but it returned a {type(answer).__name__}.")
        if tuple(answer.shape) != tuple(x.shape):
            raise wrong(
                f"On {name}, unpool returned shape {tuple(answer.shape)}; it should have the pooling "
                f"input's shape {tuple(x.shape)}: use size = (H, W) for the output, not twice the pooled "
                "size."
            )
        right = pool_backward_by_autograd(x, p)
        answer = answer.detach().to(right.dtype)
        if _close(answer, right):
            continue
        h, w = 2 * pooled.shape[-2], 2 * pooled.shape[-1]
        copied = torch.zeros_like(x)
        copied[..., :h, :w] = p.repeat_interleave(2, -2).repeat_interleave(2, -1)
        corner = torch.zeros_like(x)
        corner[..., 0:h:2, 0:w:2] = p
        if _close(answer, copied):
            raise wrong(
                "You copy each value to all four positions of its window, like nearest-neighbour "
                "upsampling; only the position of the window's maximum, the switch, receives it, the other "
                "three get 0."
            )
        if _close(answer, copied / 4):
            raise wrong(
                "You spread each value evenly over its window, which is the backward of average pooling; "
                "max-pooling sends the whole value to the switch, the position of the window's maximum."
            )
        if _close(answer, corner):
            raise wrong(
                "You put each value at the top-left corner of its window; it belongs where the window's "
                "maximum was, the switch: row switch // W, column switch % W."
            )
        if x.shape[-1] == x.shape[-2] and _close(answer, right.transpose(-1, -2)):
            raise wrong(
                "You decoded the switches with rows and columns swapped: a switch is the flat index row * "
                "W + column in its (H, W) plane, so row = switch // W and column = switch % W."
            )
        if not bool(answer.abs().sum()):
            raise wrong(f"On {name}, unpool returned zeros only: write p's values at the switches.")
        raise wrong(
            f"On {name}, your unpooling differs from the gradient of max-pooling (largest difference "
            f"{float((answer - right).abs().max()):.2g}): each value of p goes to the flat position "
            "switches[n, c, i, j] of plane (n, c), every other position gets 0."
        )
    return "Your unpooling through the switches is exactly the backward of max-pooling."


# --------------------------------------------------------------------------------------------
# 3.2 the projection of a network without max-pooling
# --------------------------------------------------------------------------------------------

_POOL_FREE = {
    "a": "Nothing on DeConvNet's way down reads this image: its ReLU* is p · [p > 0] (x is ignored), and the "
    "backward of a convolution (the transposed filters), of averaging and of the linear layer is a fixed "
    "linear map. Without max-pooling there are no switches, so the projection cannot show the image's own "
    "edges.",
    "c": "Almost: dl.project seeds the backward pass with the unit's activation (every other one set to "
    "0), and every step down is linear in the seed or, for p · [p > 0], scales with a positive factor; so "
    "the picture is the same but scales with the activation: projection₂ = (a₂ / a₁) · projection₁.",
    "d": "Nothing on DeConvNet's way down reads the image, so nothing can cut the projection to the "
    "bright part of it: ReLU* = p · [p > 0] ignores x, and the transposed convolutions use the filters only.",
}


def _rules(value: object) -> set[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise wrong(
            f'Give the rules as a set of names, e.g. {{"gradient"}} (an empty set() if none), got {value!r}.'
        )
    names = set()
    for item in value:
        try:
            name = get_rule(item).name
        except (TypeError, ValueError):
            name = ""
        if name not in BUILTIN_NAMES:
            raise wrong(f"{item!r} is not one of the rules {', '.join(map(repr, BUILTIN_NAMES))}.")
        names.add(name)
    return names


@checker("3.2 Predict the projection of a network without max-pooling")
def check_pool_free_projection(answer: object, change_with_image: object) -> str:
    """Exercise 3.2: the letter for DeConvNet's projection, and the rules whose projections change.

    The answers: ``"b"`` (the same picture, scaled by the unit's activation) and
    ``{"gradient", "guided_backprop"}`` (both read the forward gate ``[x > 0]``).
    """
    text = answer.strip().strip("()").strip().lower() if isinstance(answer, str) else ""
    if len(text) != 1 or text not in "abcd":
        raise wrong(f'Answer with one of the letters a, b, c, d (a string such as "a"), got {answer!r}.')
    if text != "b":
        raise wrong(_POOL_FREE[text])
    rules = _rules(change_with_image)
    if "deconvnet" in rules:
        raise wrong(
            "Your letter is right, but then DeConvNet's projection does not change with the image (beyond "
            "the scale): on this network only max-pooling's switches could carry the image into it, and "
            "there are none."
        )
    missing = {"gradient", "guided_backprop"} - rules
    if missing:
        names = " and ".join(sorted(missing))
        raise wrong(
            f"Your letter is right, but {names} also change with the image: their ReLU* reads the forward "
            "gate [x > 0], which depends on the image at every ReLU."
        )
    return (
        "Right: DeConvNet's projection on a pool-free network is one fixed picture per unit, scaled by the "
        "unit's activation; the gradient and guided backprop read [x > 0] and change with the image."
    )


# --------------------------------------------------------------------------------------------
# 3.3 where DeConvNet and guided backprop agree
# --------------------------------------------------------------------------------------------


@checker("3.3 Where DeConvNet and guided backprop agree")
def check_identical_layers(layers: object, all_layers: Sequence[str] = TEACHING_RELUS) -> str:
    """Exercise 3.3: the layers whose strongest unit projects identically under both rules.

    The answer is the first ReLU only: the way down from it crosses one ReLU, the unit's own,
    where ``x > 0`` (it fired) and ``p > 0`` (the seed is its activation).
    """
    if isinstance(layers, str) or not isinstance(layers, Iterable):
        raise wrong(f'Give a list of layer names, e.g. ["{all_layers[0]}"], got {layers!r}.')
    chosen = list(layers)
    unknown = [layer for layer in chosen if layer not in all_layers]
    if unknown:
        raise wrong(f"{unknown[0]!r} is not one of the five ReLU layers {', '.join(all_layers)}.")
    first, deeper = all_layers[0], [layer for layer in chosen if layer != all_layers[0]]
    if deeper:
        raise wrong(
            f"At {deeper[0]} the two differ: the way down crosses the ReLUs of the layers below, where a "
            "unit that was off in the forward pass (x ≤ 0) can receive a positive p; DeConvNet (p · [p > "
            "0]) passes it there, guided backprop (p · [x > 0] · [p > 0]) does not."
        )
    if first not in chosen:
        raise wrong(
            f"At {first} the two are identical: the way down crosses one ReLU only, the unit's own, and "
            "there both gates are open: x > 0 (it is the strongest unit and it fired) and p > 0 (the seed "
            "is its positive activation); every other unit gets p = 0."
        )
    return (
        f"Right: only at {first}. From the second ReLU layer on, the way down crosses earlier ReLUs where "
        "units that were off get positive p, which DeConvNet passes and guided backprop blocks."
    )


# --------------------------------------------------------------------------------------------
# 3.4 the top nine images of a channel
# --------------------------------------------------------------------------------------------


def _top9(activations: Tensor, channel: int) -> tuple[Tensor, Tensor]:
    """Model answer of 3.4: each image's strongest unit of ``channel``, then the nine strongest images."""
    feature = activations[:, channel].flatten(1)  # (N, h * w)
    strongest, where = feature.max(dim=1)  # per image: the strongest unit and its flat position
    indices = strongest.topk(9).indices  # the nine strongest images, strongest first
    width = activations.shape[-1]
    positions = torch.stack([where[indices] // width, where[indices] % width], dim=1)  # (row, column)
    return indices, positions


def _as_top(answer: object, count: int) -> tuple[Tensor, Tensor]:
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise wrong("top9 should return two things, (indices, positions), e.g. return indices, positions.")
    try:
        indices = torch.as_tensor(answer[0]).long().flatten()
        positions = torch.as_tensor(answer[1]).long()
    except (TypeError, ValueError, RuntimeError):
        raise wrong("top9's indices and positions should be tensors (or lists) of integers.") from None
    if indices.numel() != count:
        raise wrong(f"top9 returned {indices.numel()} indices; it should give the {count} strongest images.")
    if positions.dim() == 1 and positions.numel() == count:
        raise wrong(
            "Your positions are one number per image (a flat index?); give (row, column) pairs, shape (9, "
            "2): row = index // width, column = index % width."
        )
    if tuple(positions.shape) != (count, 2):
        raise wrong(
            f"top9's positions have shape {tuple(positions.shape)}; they should be (row, column) pairs, (9, "
            "2)."
        )
    return indices, positions


def _synthetic() -> Tensor:
    """Activations (12 images, 2 channels, 4x4) that tell the usual mistakes apart.

    Image 0 holds the two strongest units of channel 1 (ranking units, not images, lists it
    twice); image 1 has the largest mean but a small maximum (ranking by the mean lists it).
    """
    generator = torch.Generator().manual_seed(2)
    acts = torch.rand(12, 2, 4, 4, generator=generator) * 0.5
    acts[:, 1, 2, 1] += torch.linspace(1.0, 2.0, 12)  # a clear maximum per image, at (2, 1)
    acts[0, 1, 0, 3] = 5.0
    acts[0, 1, 3, 0] = 4.5
    acts[1, 1] = 1.9  # flat: the largest mean, a middling maximum
    acts[1, 1, 1, 2] = 1.95
    return acts


@checker("3.4 The top nine images of a channel")
def check_top9(top9: Callable[..., Any], model: nn.Module, images: Tensor, layer: str = "features.7") -> str:
    """Exercise 3.4: ``top9(activations, channel)`` against :func:`~deconvlab.zeiler_fergus.channel_maxima`.

    ``top9`` returns ``(indices, positions)``: the 9 images whose strongest unit of ``channel`` is
    largest, strongest first, and that unit's ``(row, column)``. Checked on activations built to
    tell the usual mistakes apart (ranking units instead of images, ranking by the mean, the
    weakest first, swapped coordinates), then on ``layer`` of ``model`` over ``images``.
    """
    acts = _synthetic()
    answer = call_answer(top9, acts.clone(), 1, what="your top9(activations, channel)")
    indices, positions = _as_top(answer, 9)
    right_indices, right_positions = _top9(acts, 1)
    if not torch.equal(indices, right_indices):
        if len(set(indices.tolist())) < len(indices):
            repeated = next(i for i in indices.tolist() if indices.tolist().count(i) > 1)
            raise wrong(
                f"Image {repeated} appears more than once: you ranked units, not images. Take each image's "
                "strongest unit of the channel first (the max over positions), then the 9 strongest "
                "images."
            )
        by_mean = acts[:, 1].mean((1, 2)).topk(9).indices
        if torch.equal(indices, by_mean):
            raise wrong(
                "You ranked the images by the channel's mean activation; Zeiler and Fergus rank them by "
                "its strongest unit (the max over positions), which is the unit they project."
            )
        if torch.equal(indices, right_indices.flip(0)):
            raise wrong(
                "Your nine are the right images in the wrong order: strongest first (topk, not ascending "
                "sort)."
            )
        weakest = acts[:, 1].flatten(1).max(1).values.topk(9, largest=False).indices
        if torch.equal(indices, weakest):
            raise wrong("You picked the nine weakest images: use topk (largest=True), strongest first.")
        if set(indices.tolist()) == set(right_indices.tolist()):
            raise wrong("Your nine are the right images, but not in order: strongest first.")
        raise wrong(
            f"Your images {indices.tolist()} are not the nine whose strongest unit of the channel is "
            f"largest ({right_indices.tolist()})."
        )
    if not torch.equal(positions, right_positions):
        if torch.equal(positions, right_positions.flip(1)):
            raise wrong(
                "Your positions are (column, row); give (row, column): row = index // width, column = "
                "index % width."
            )
        raise wrong(
            "Your images are right but the positions are not: give, for each image, the (row, column) of "
            "the channel's strongest unit in the feature map (not in pixels)."
        )
    activations = layer_output(model, images, layer)
    maxima = channel_maxima(model, images, [layer])[layer]
    fired = (maxima.values > 0).sum(0)
    channels = [
        int(c) for c in fired.argsort(descending=True)[:2]
    ]  # channels with nine or more images that fire
    for channel in channels:
        answer = call_answer(top9, activations.clone(), channel, what="your top9(activations, channel)")
        indices, positions = _as_top(answer, 9)
        top = maxima.top(channel, 9)
        if not torch.equal(indices, top.indices) or not torch.equal(positions, top.positions):
            raise wrong(
                f"On {layer}, channel {channel} of the teaching model, your nine {indices.tolist()} differ "
                f"from zeiler_fergus.channel_maxima's {top.indices.tolist()} (or their positions do)."
            )
    return (
        "Your nine images and positions are exactly those of "
        "deconvlab.zeiler_fergus.channel_maxima(...).top(channel)."
    )


#: The notebook's model answers: ``unpool`` (3.1), ``pool_free`` and ``change_with_image`` (3.2),
#: ``identical_layers`` (3.3), ``top9`` (3.4).
solutions = SimpleNamespace(
    unpool=_unpool,
    pool_free="b",
    change_with_image={"gradient", "guided_backprop"},
    identical_layers=["features.1"],
    top9=_top9,
)
