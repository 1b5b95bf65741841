r"""Exercises of notebook 04, *Sanity checks*: their checkers, the helpers they need, and the solutions.

The maps differ only in the backward of ReLU (``x`` the forward input, ``p`` the signal from
above): gradient ``p · [x > 0]``, DeConvNet ``p · [p > 0]``, guided backprop
``p · [x > 0] · [p > 0]``; Grad-CAM, Guided Grad-CAM and SmoothGrad are built on them.

* 4.1 :func:`check_survivors` -- predict which maps survive re-initialising the logits;
* 4.2 :func:`check_randomisation_test` -- build the logit-randomisation test yourself;
* 4.3 :func:`check_guided_from` -- write the rule map "guided from ReLU layer k upward";
* 4.4 :func:`check_recovery_depth` -- predict the ``k`` at which the image appears;
* 4.5 :func:`check_same_picture_prediction` and :func:`check_swapped_game` -- the pointing game
  with each map scored against the *other* object;
* 4.6 :func:`check_pointing_statements` -- why guided backprop passes the pointing game yet
  fails the class-sensitivity check.

:class:`solutions` holds the model answers (the notebook's solution cells and the tests use them).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..attribution import attribute, explain_rules
from ..metrics import abs_normalise, pointing_hits, spearman
from ..rule_maps import RuleMap
from ..rules import Rule, get_rule
from .feedback import call_answer, checker, wrong

if TYPE_CHECKING:
    from ..sanity import CascadeResult, PointingResult
    from ..sanity.guided_depth import GuidedDepthResult

__all__ = [
    "METHODS",
    "POINTING_STATEMENTS",
    "SURVIVAL_THRESHOLD",
    "check_guided_from",
    "check_pointing_statements",
    "check_randomisation_test",
    "check_recovery_depth",
    "check_same_picture_prediction",
    "check_survivors",
    "check_swapped_game",
    "first_recovering_k",
    "peaks_apart",
    "solutions",
    "survivors",
]

#: The six methods of the checks, named as in Adebayo et al.'s table.
METHODS = ("gradient", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam", "smoothgrad")

#: A map "survives" re-initialising the logits when its mean Spearman (|map|) with the trained map
#: stays this high.
SURVIVAL_THRESHOLD = 0.75

_WHY_CHANGES = {
    "gradient": "the gradient sends the logit's weights back through the network, so new logit "
    "weights give a new map",
    "smoothgrad": "SmoothGrad averages gradients, and every one of them changes with the logit's weights",
    "grad_cam": "Grad-CAM weighs the feature maps by the gradient of the logit, which the new "
    "weights replace",
    "guided_grad_cam": "Guided Grad-CAM multiplies guided backprop by Grad-CAM, and the Grad-CAM "
    "factor changes with the logit's weights",
}
_WHY_SURVIVES = (
    "its [p > 0] gate drops the negative part of the signal at every ReLU, and what is left mostly "
    "reconstructs the image, whatever the top layer's weights (Nie et al., 2018)"
)


# -- 4.1 which maps survive re-initialising the logits ------------------------------------------------


def survivors(cascade: CascadeResult, threshold: float = SURVIVAL_THRESHOLD) -> set[str]:
    """The methods whose mean Spearman (|map|) with the trained map stays ``>= threshold`` after
    re-initialising the logits (stage 1)."""
    means = cascade.mean("spearman_abs")
    return {method for method, values in means.items() if values[1] >= threshold}


def _method_set(answer: object, what: str) -> set[str]:
    if isinstance(answer, str) or not isinstance(answer, (set, frozenset, list, tuple)):
        raise wrong(
            f"{what} should be a set of method names such as {{'gradient'}}, not a {type(answer).__name__}."
        )
    unknown = [name for name in answer if not isinstance(name, str) or name not in METHODS]
    if unknown:
        raise wrong(f"{unknown[0]!r} is not one of the six methods: {', '.join(METHODS)}.")
    return set(answer)


@checker("4.1 Which maps survive re-initialising the logits?")
def check_survivors(answer: object, cascade: CascadeResult) -> str:
    """``answer``: the set of methods whose map stays similar after re-initialising only the logits."""
    predicted = _method_set(answer, "Your prediction")
    means = cascade.mean("spearman_abs")
    truth = survivors(cascade)
    for method in METHODS:
        if method not in means:
            continue
        value = means[method][1]
        if method in predicted and method not in truth:
            raise wrong(
                f"{method} does not survive: its mean similarity after the logits is {value:.2f}, below "
                f"{SURVIVAL_THRESHOLD}, because {_WHY_CHANGES.get(method, 'its map depends on the logits')}."
            )
        if method in truth and method not in predicted:
            raise wrong(
                f"{method} survives: its mean similarity after the logits is still {value:.2f}, because "
                f"{_WHY_SURVIVES}."
            )
    return (
        f"Right: only {' and '.join(sorted(truth))} stay above {SURVIVAL_THRESHOLD}; both have the "
        "[p > 0] gate."
    )


# -- 4.2 build the logit-randomisation test -----------------------------------------------------------


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _as_correlations(result: object, n: int) -> np.ndarray:
    try:
        values = np.asarray(result.detach().cpu() if isinstance(result, Tensor) else result, dtype=float)
    except (TypeError, ValueError):
        raise wrong(
            f"Your function should return {n} rank correlations, one per image, not a "
            f"{type(result).__name__}."
        ) from None
    if values.ndim == 0:
        raise wrong(f"You returned one number; return one rank correlation per image ({n} numbers).")
    if values.shape != (n,):
        raise wrong(
            f"Return one rank correlation per image: {n} numbers, but yours have shape {values.shape}."
        )
    return values


@checker("4.2 Build the logit-randomisation test")
def check_randomisation_test(
    test: Callable[..., Any], model: nn.Module, images: Tensor, labels: Tensor, cascade: CascadeResult
) -> str:
    """``test(model, images, labels, rule, seed)``: per-image Spearman of |map|, the trained model
    against a copy with its logits re-initialised (stage 1 of ``cascade``)."""
    seed = 0 if cascade.seed is None else cascade.seed
    before = _weights(model)
    mine = call_answer(test, model, images, labels, "gradient", seed, what="your logit_randomisation_test")
    if any(not torch.equal(value, before[name]) for name, value in model.state_dict().items()):
        model.load_state_dict(before)
        raise wrong(
            "Your function changed the trained model's weights (they are restored now): re-initialise "
            "a copy, copy.deepcopy(model), never the model itself."
        )
    mine = _as_correlations(mine, len(images))
    expected = cascade.spearman_abs["gradient"][1]
    if np.allclose(mine, expected, atol=1e-6, equal_nan=True):
        guided = call_answer(
            test, model, images, labels, "guided_backprop", seed, what="your logit_randomisation_test"
        )
        guided = _as_correlations(guided, len(images))
        if not np.allclose(guided, cascade.spearman_abs["guided_backprop"][1], atol=1e-6, equal_nan=True):
            raise wrong(
                "Right for the gradient, but not for guided_backprop: compute the maps with the rule "
                "your function is given (dl.attribute(..., rule=rule))."
            )
        return (
            f"Right: your numbers equal deconvlab.sanity's (gradient mean {np.nanmean(mine):.2f}, "
            f"guided backprop {np.nanmean(guided):.2f})."
        )
    if np.allclose(mine, cascade.spearman_signed["gradient"][1], atol=1e-6, equal_nan=True):
        raise wrong(
            "These are rank correlations of the signed maps; Adebayo et al.'s main measure compares the "
            "absolute-value normalised maps: dl.metrics.abs_normalise before dl.metrics.spearman."
        )
    if np.allclose(mine, 1.0, atol=1e-6):
        raise wrong(
            "Your correlations are all 1: the two maps are the same, so the copy's maps were not "
            "computed after re-initialising its logits (or were computed with the trained model)."
        )
    for stage in range(2, len(cascade.stages)):
        if np.allclose(mine, cascade.spearman_abs["gradient"][stage], atol=1e-6, equal_nan=True):
            raise wrong(
                f"Your numbers are those of stage {stage} ({', '.join(cascade.stages[1 : stage + 1])} "
                "re-initialised): re-initialise only the logits layer, classifier.2."
            )
    if abs(np.nanmean(mine) - np.nanmean(expected)) < 0.1:
        raise wrong(
            f"Close (your mean {np.nanmean(mine):.2f}, deconvlab.sanity's {np.nanmean(expected):.2f}) "
            "but not equal: call torch.manual_seed(seed) right before sanity.reinitialise_ on the "
            "copy's classifier[2]."
        )
    raise wrong(
        f"Your correlations (mean {np.nanmean(mine):.2f}) differ from deconvlab.sanity's (mean "
        f"{np.nanmean(expected):.2f}): compare the |map| of the trained model and of a copy whose logits "
        "(classifier.2) are re-initialised, image by image, with dl.metrics.spearman."
    )


# -- 4.3 the rule map "guided from layer k upward" ----------------------------------------------------


def _rules_per_relu(model: nn.Module, x: Tensor, spec: object) -> list[str]:
    """The rule each ReLU call of ``model`` on ``x`` gets under ``spec`` (a rule, a RuleMap or a dict)."""
    if isinstance(spec, (RuleMap, Mapping)):
        return [row.rule for row in explain_rules(model, x, spec)]
    rule = get_rule(spec)  # type: ignore[arg-type]
    calls = len(explain_rules(model, x, RuleMap({"*": rule.name})))
    return [rule.name] * calls


def _relu_paths(model: nn.Module, x: Tensor) -> list[str]:
    return [row.module for row in explain_rules(model, x, RuleMap({"*": "gradient"}))]


@checker("4.3 The rule map 'guided from layer k upward'")
def check_guided_from(guided_from: Callable[[int], Any], model: nn.Module, x: Tensor) -> str:
    """``guided_from(k)``: a rule map giving ReLU layers ``k..L`` guided backprop, the layers below
    the gradient; checked with :func:`deconvlab.explain_rules` for every ``k`` from 1 to ``L + 1``."""
    paths = _relu_paths(model, x[:1])
    layers = len(paths)
    for k in range(1, layers + 2):
        spec = call_answer(guided_from, k, what=f"your guided_from({k})")
        if not isinstance(spec, (RuleMap, Mapping, str, Rule)):
            raise wrong(
                f"guided_from({k}) should return a dict {{module path: rule}}, not a {type(spec).__name__}."
            )
        try:
            got = _rules_per_relu(model, x[:1], spec)
        except (TypeError, ValueError) as error:
            raise wrong(f"At k = {k} your rule map was refused: {error}") from None
        for j, (path, rule) in enumerate(zip(paths, got), 1):
            should = "guided_backprop" if j >= k else "gradient"
            if rule == should:
                continue
            if j == k:
                raise wrong(
                    f"At k = {k} the ReLU of layer {k} ({path}) got {rule}, but 'from layer k upward' "
                    "includes layer k itself."
                )
            if j < k:
                raise wrong(
                    f"At k = {k} the ReLU of layer {j} ({path}) got {rule}: the layers below k keep the "
                    "gradient's rule, p · [x > 0]."
                )
            raise wrong(
                f"At k = {k} the ReLU of layer {j} ({path}) got {rule}, but every layer from k upward gets "
                "guided_backprop, p · [x > 0] · [p > 0]."
            )
    return f"Right: each of the {layers + 1} maps places the guided rule exactly at layers k to {layers}."


# -- 4.4 where the image appears ----------------------------------------------------------------------


def first_recovering_k(result: GuidedDepthResult, fraction: float = 0.5) -> int:
    """The largest ``k`` whose map (guided from ``k`` up) correlates with the image at least
    ``fraction`` as much as guided backprop's, on average over the images."""
    means = result.mean("upper")
    return max(k for k, value in means.items() if value >= fraction * means[1])


@checker("4.4 Where does the image appear?")
def check_recovery_depth(answer: object, result: GuidedDepthResult) -> str:
    """``answer``: the largest ``k`` at which the map reaches half of guided backprop's image correlation."""
    if isinstance(answer, bool) or not isinstance(answer, (int, np.integer)):
        raise wrong(f"Answer with one whole number k from 1 to {len(result.layers) + 1}, not {answer!r}.")
    k, truth = int(answer), first_recovering_k(result)
    means = result.mean("upper")
    if k not in means:
        raise wrong(f"k runs from 1 to {len(result.layers) + 1}; {k} is not a layer of this network.")
    if k > truth:
        raise wrong(
            f"At k = {k} (guided: {result.layers_text(k)}) the map correlates {means[k]:.2f} with the "
            f"image on average, {means[k] / means[1]:.0%} of guided backprop's {means[1]:.2f}: gates in "
            "these layers alone recover little."
        )
    if k < truth:
        raise wrong(
            f"Already at k = {truth} (guided: {result.layers_text(truth)}) the map correlates "
            f"{means[truth]:.2f}, {means[truth] / means[1]:.0%} of guided backprop's {means[1]:.2f}."
        )
    return (
        f"Right: only from k = {truth} down ({result.layers_text(truth)}) does the map look like the image; "
        "the gates nearest the pixels do the recovering."
    )


# -- 4.5 the swapped pointing game --------------------------------------------------------------------

_SAME_PICTURE = {
    "equal": None,
    "100 minus": "That would hold if each map's peak sat on one of the two objects and moved with "
    "the class; but identical maps have one peak for both trials of an image.",
    "zero": "A map that ignores the class still lands on some object: the real and the swapped game "
    "score the same two trials of each image.",
}


@checker("4.5a Predict: the swapped score of a class-blind map")
def check_same_picture_prediction(answer: object) -> str:
    """``answer``: ``"equal"``, ``"100 minus"`` or ``"zero"``, a class-blind map's swapped score
    against its real one."""
    if not isinstance(answer, str) or answer not in _SAME_PICTURE:
        raise wrong(f"Answer with one of {', '.join(map(repr, _SAME_PICTURE))}, not {answer!r}.")
    why = _SAME_PICTURE[answer]
    if why is not None:
        raise wrong(why)
    return (
        "Right: the map for A equals the map for B, so 'map A on mask B' and 'map B on mask B' are "
        "the same trial; the swapped game scores the same hits, reordered."
    )


def swapped_hits(game: PointingResult, masks: Tensor) -> dict[str, np.ndarray]:
    """Each trial's peak scored against the *other* object's mask (two-object images, trials in pairs)."""
    other = masks.flip(1).reshape(-1, *masks.shape[-2:]).numpy().astype(bool)
    return {method: pointing_hits(points, other, game.tolerance) for method, points in game.points.items()}


@checker("4.5b Play the swapped pointing game")
def check_swapped_game(swapped: object, game: PointingResult, masks: Tensor) -> str:
    """``swapped``: ``sanity.pointing_game`` with every map scored against the other object's mask."""
    from ..sanity import PointingResult

    if not isinstance(swapped, PointingResult):
        raise wrong(f"swapped should be what sanity.pointing_game returns, not a {type(swapped).__name__}.")
    if len(swapped.labels) != len(game.labels):
        raise wrong(
            f"Play on the same {len(game.labels) // 2} two-object images as the real game: yours has "
            f"{len(swapped.labels)} trials, not {len(game.labels)}."
        )
    expected = swapped_hits(game, masks)
    shared = [method for method in expected if method in swapped.hits]
    if not shared:
        raise wrong(
            f"Your game scored {', '.join(swapped.hits)}; play it with the real game's methods "
            f"({', '.join(expected)}): the default rules of sanity.pointing_game."
        )
    if all(np.array_equal(swapped.hits[m], game.hits[m]) for m in shared):
        raise wrong(
            "These are the real game's hits: each map is still scored against its own object. Swap the two "
            "objects' masks: game_images.masks.flip(1)."
        )
    if not all(np.array_equal(swapped.hits[m], expected[m]) for m in shared):
        raise wrong(
            "Your hits are neither the real game's nor the swapped one's: keep the images and the "
            "labels, and give pointing_game the masks with the two objects exchanged, masks.flip(1) "
            "(flip(-1) would mirror them)."
        )
    shown = "guided_backprop" if "guided_backprop" in shared else shared[0]
    return (
        f"Right: {shown} hits in {100 * swapped.hits[shown].mean():.0f}% of the swapped trials, against "
        f"{100 * game.hits[shown].mean():.0f}% in the real game."
    )


def peaks_apart(game: PointingResult) -> dict[str, float]:
    """Per method, the share of two-object images whose maps for A and B peak more than the
    tolerance apart."""
    out = {}
    for method, points in game.points.items():
        pairs = np.asarray(points, dtype=float).reshape(-1, 2, 2)
        distance = np.linalg.norm(pairs[:, 0] - pairs[:, 1], axis=1)
        out[method] = float(np.mean(distance > game.tolerance))
    return out


# -- 4.6 the pointing game and class sensitivity ------------------------------------------------------

#: The statements of exercise 4.6, and whether each is true (the notebook asserts each one).
POINTING_STATEMENTS = {
    "a": (
        "On most images guided backprop's maps for A and B peak at different places, although they rank "
        "all the pixels almost alike.",
        True,
    ),
    "b": (
        "Guided backprop's peak lands on an object chosen by the image, not by the class, so it hits the "
        "named object by luck.",
        False,
    ),
    "c": (
        "A map that ignores the class, such as the centre baseline, makes the same hits in the "
        "swapped game as in the real one (only their order changes).",
        True,
    ),
    "d": (
        "The gradient, whose signed maps change most with the class, also has the peak that "
        "follows the class best.",
        False,
    ),
    "e": (
        "Guided backprop puts more of its energy on the named object than on the other one, and "
        "that re-weighting of the two objects is enough to move the maximum.",
        True,
    ),
}

_WHY = {
    "a": "(a) is true: Spearman ranks all 4096 pixels, most of them edges and clutter that both "
    "maps share, while the pointing game reads one pixel, the maximum, which moves with the class.",
    "b": "(b) is false: a peak that ignored the class would score as high in the swapped game as in "
    "the real one (statement c); guided backprop's swapped score is far lower.",
    "c": "(c) is true: a class-blind map has one peak for both trials of an image, so swapping the "
    "masks only reorders the hits.",
    "d": "(d) is false: the gradient's real and swapped scores are about equal, so its peak does not "
    "follow the class, although the sign of its map does.",
    "e": "(e) is true: guided backprop's selectivity is above 0.5, and the maximum sits on whichever "
    "object's edges are brightest.",
}


@checker("4.6 Why does guided backprop pass the pointing game yet fail the class-sensitivity check?")
def check_pointing_statements(answer: object) -> str:
    """``answer``: the set of letters of the true statements in :data:`POINTING_STATEMENTS`."""
    if isinstance(answer, str):  # "ace", "a, c, e": the letters
        answer = set(re.findall(r"[A-Za-z]", answer))
    if not isinstance(answer, (set, frozenset, list, tuple)):
        raise wrong(f"Answer with a set of letters such as {{'a', 'c'}}, not a {type(answer).__name__}.")
    chosen = {str(letter).strip().lower() for letter in answer}
    unknown = sorted(chosen - set(POINTING_STATEMENTS))
    if unknown:
        raise wrong(f"{unknown[0]!r} is not a statement; choose among {', '.join(POINTING_STATEMENTS)}.")
    for letter, (_, true) in POINTING_STATEMENTS.items():
        if (letter in chosen) != true:
            raise wrong(_WHY[letter])
    return (
        "Right: class sensitivity (does the whole picture change with the class?) and localisation (does the "
        "maximum sit on the named object?) are different properties."
    )


# -- the model answers ----------------------------------------------------------------------------------


class solutions:
    """The model answers of notebook 04's exercises (the notebook's solution cells hold the same code)."""

    survivors = frozenset({"deconvnet", "guided_backprop"})
    recovery_k = 1
    same_picture = "equal"
    pointing_statements = frozenset({"a", "c", "e"})

    @staticmethod
    def logit_randomisation_test(
        model: nn.Module, images: Tensor, labels: Tensor, rule: str, seed: int
    ) -> np.ndarray:
        """Spearman of |map| per image: the trained model against a copy with its logits re-initialised."""
        from ..sanity import reinitialise_

        randomised = copy.deepcopy(model)
        torch.manual_seed(seed)
        reinitialise_(randomised.get_submodule("classifier.2"))
        before = attribute(model, images, labels, rule=rule)
        after = attribute(randomised, images, labels, rule=rule)
        return spearman(abs_normalise(before), abs_normalise(after))

    @staticmethod
    def guided_from(
        k: int,
        layers: tuple[str, ...] = ("features.1", "features.4", "features.7", "features.9", "features.12"),
    ) -> dict[str, str]:
        """The rule map: ``guided_backprop`` at ReLU layers ``k`` and above, ``gradient`` below."""
        return {path: "guided_backprop" if j >= k else "gradient" for j, path in enumerate(layers, 1)}
