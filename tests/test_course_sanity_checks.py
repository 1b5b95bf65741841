"""Notebook 04's checkers (deconvlab.course.sanity_checks): the model answer passes, typical wrong answers are
told what is wrong in a sentence, and ``...`` is "not done"."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import deconvlab as dl
from deconvlab import sanity
from deconvlab.course import sanity_checks as course
from deconvlab.course.sanity_checks import solutions
from deconvlab.sanity import CascadeResult, GuidedDepthResult, PointingResult


@pytest.fixture(scope="module")
def model():
    return dl.models.teaching_model()


@pytest.fixture(scope="module")
def probe():
    return dl.data.shapes(4, seed=dl.train.HELDOUT_SEED, offset=100)


@pytest.fixture(scope="module")
def cascade(model, probe):
    return sanity.cascading_randomisation(
        model, probe.images, probe.labels, rules=("gradient", "guided_backprop"), seed=3
    )


def verdict(feedback, status, *words):
    assert feedback.status == status, feedback
    for word in words:
        assert word in feedback.message, (word, feedback.message)


# -- 4.1 ----------------------------------------------------------------------------------------------


def fake_cascade(after_logits: dict[str, float]) -> CascadeResult:
    """A cascade whose stage-1 similarity (|map|) of each method is ``after_logits[method]`` on 2 images."""
    values = {m: np.array([[1.0, 1.0], [v, v], [0.1, 0.1]]) for m, v in after_logits.items()}
    return CascadeResult(
        torch.zeros(2, 3, 8, 8), torch.zeros(2), ["original", "a", "b"], {}, values, values, values
    )


MEASURED = fake_cascade(
    {
        "gradient": 0.62,
        "deconvnet": 0.88,
        "guided_backprop": 0.92,
        "grad_cam": 0.2,
        "guided_grad_cam": 0.45,
        "smoothgrad": 0.48,
    }
)


def test_survivors_accepts_the_gated_rules_and_explains_each_mistake():
    verdict(course.check_survivors(set(solutions.survivors), MEASURED), "correct", "[p > 0]")
    verdict(course.check_survivors(["guided_backprop", "deconvnet"], MEASURED), "correct")
    verdict(course.check_survivors({"guided_backprop"}, MEASURED), "wrong", "deconvnet survives", "0.88")
    verdict(
        course.check_survivors({"deconvnet", "guided_backprop", "guided_grad_cam"}, MEASURED),
        "wrong",
        "guided_grad_cam does not survive",
        "0.45",
        "Grad-CAM factor",
    )
    verdict(course.check_survivors(set(), MEASURED), "wrong", "survives")
    verdict(
        course.check_survivors({"gradient", "deconvnet", "guided_backprop"}, MEASURED),
        "wrong",
        "logit's weights",
    )
    verdict(course.check_survivors("guided_backprop", MEASURED), "wrong", "set of method names")
    verdict(course.check_survivors({"gbp"}, MEASURED), "wrong", "'gbp' is not one of the six methods")
    verdict(course.check_survivors([["gradient"]], MEASURED), "wrong", "is not one of the six methods")
    verdict(course.check_survivors(..., MEASURED), "not done")
    assert course.survivors(MEASURED) == set(solutions.survivors)


# -- 4.2 ----------------------------------------------------------------------------------------------


def test_randomisation_test_the_model_answer_equals_deconvlab_sanity(model, probe, cascade):
    verdict(
        course.check_randomisation_test(
            solutions.logit_randomisation_test, model, probe.images, probe.labels, cascade
        ),
        "correct",
        "equal deconvlab.sanity's",
    )


def _signed(model, images, labels, rule, seed):
    randomised = copy.deepcopy(model)
    torch.manual_seed(seed)
    sanity.reinitialise_(randomised.classifier[2])
    before, after = (
        dl.attribute(model, images, labels, rule=rule),
        dl.attribute(randomised, images, labels, rule=rule),
    )
    return dl.metrics.spearman(dl.metrics.diverging_normalise(before), dl.metrics.diverging_normalise(after))


def _in_place(model, images, labels, rule, seed):
    before = dl.attribute(model, images, labels, rule=rule)
    torch.manual_seed(seed)
    sanity.reinitialise_(model.classifier[2])  # the trained model itself
    after = dl.attribute(model, images, labels, rule=rule)
    return dl.metrics.spearman(dl.metrics.abs_normalise(before), dl.metrics.abs_normalise(after))


def _too_deep(model, images, labels, rule, seed):
    randomised = copy.deepcopy(model)
    torch.manual_seed(seed)
    sanity.reinitialise_(randomised.classifier[2])
    sanity.reinitialise_(randomised.features[11])
    before, after = (
        dl.attribute(model, images, labels, rule=rule),
        dl.attribute(randomised, images, labels, rule=rule),
    )
    return dl.metrics.spearman(dl.metrics.abs_normalise(before), dl.metrics.abs_normalise(after))


def _always_gradient(model, images, labels, rule, seed):
    return solutions.logit_randomisation_test(model, images, labels, "gradient", seed)


def _mean_only(model, images, labels, rule, seed):
    return float(np.mean(solutions.logit_randomisation_test(model, images, labels, rule, seed)))


def _unseeded(model, images, labels, rule, seed):
    return solutions.logit_randomisation_test(model, images, labels, rule, seed + 1)


def _trained_twice(model, images, labels, rule, seed):
    maps = dl.attribute(model, images, labels, rule=rule)
    return dl.metrics.spearman(dl.metrics.abs_normalise(maps), dl.metrics.abs_normalise(maps))


@pytest.mark.parametrize(
    "answer, words",
    [
        (_signed, ["signed maps", "abs_normalise"]),
        (_too_deep, ["stage 2", "only the logits"]),
        (_always_gradient, ["not for guided_backprop", "rule"]),
        (_mean_only, ["one number", "one rank correlation per image"]),
        (_unseeded, ["torch.manual_seed(seed)"]),
        (_trained_twice, ["all 1"]),
        (lambda *args: 1 / 0, ["raised ZeroDivisionError"]),
    ],
)
def test_randomisation_test_says_what_is_wrong(model, probe, cascade, answer, words):
    verdict(
        course.check_randomisation_test(answer, model, probe.images, probe.labels, cascade), "wrong", *words
    )


def test_randomisation_test_restores_a_model_changed_in_place(model, probe, cascade):
    weights = copy.deepcopy(model.state_dict())
    feedback = course.check_randomisation_test(_in_place, model, probe.images, probe.labels, cascade)
    verdict(feedback, "wrong", "changed the trained model's weights", "copy.deepcopy")
    assert all(torch.equal(value, weights[name]) for name, value in model.state_dict().items())


def test_randomisation_test_not_done(model, probe, cascade):
    def stub(model, images, labels, rule, seed): ...

    verdict(course.check_randomisation_test(..., model, probe.images, probe.labels, cascade), "not done")
    verdict(
        course.check_randomisation_test(stub, model, probe.images, probe.labels, cascade),
        "not done",
        "returns nothing",
    )


# -- 4.3 ----------------------------------------------------------------------------------------------


def test_guided_from_accepts_the_model_answer_and_the_library_map(model, probe):
    verdict(course.check_guided_from(solutions.guided_from, model, probe.images), "correct", "6 maps")
    verdict(
        course.check_guided_from(lambda k: sanity.guided_from_layer(model, k), model, probe.images), "correct"
    )
    layers = sanity.relu_layers(model)
    only_guided = lambda k: {path: "guided_backprop" for path in layers[k - 1 :]} or "gradient"  # noqa: E731
    verdict(course.check_guided_from(only_guided, model, probe.images), "correct")


def _paths(k, test):
    layers = ("features.1", "features.4", "features.7", "features.9", "features.12")
    return {path: "guided_backprop" if test(j, k) else "gradient" for j, path in enumerate(layers, 1)}


@pytest.mark.parametrize(
    "answer, words",
    [
        (lambda k: _paths(k, lambda j, k: j > k), ["At k = 1", "includes layer k itself"]),
        (lambda k: _paths(k, lambda j, k: j >= k - 1), ["At k = 2", "features.1", "keep the gradient"]),
        (lambda k: _paths(k, lambda j, k: j < k), ["At k = 1", "gradient"]),
        (lambda k: {"features.99": "guided_backprop"}, ["refused", "features.99"]),
        (lambda k: ["features.1"], ["should return a dict"]),
        (lambda k: {"features.1": "guided_backpropagation"}, ["refused", "guided_backprop"]),
    ],
)
def test_guided_from_says_what_is_wrong(model, probe, answer, words):
    verdict(course.check_guided_from(answer, model, probe.images), "wrong", *words)


def test_guided_from_not_done(model, probe):
    def stub(k): ...

    verdict(course.check_guided_from(..., model, probe.images), "not done")
    verdict(course.check_guided_from(stub, model, probe.images), "not done")


# -- 4.4 ----------------------------------------------------------------------------------------------


def fake_depth(upper: dict[int, float]) -> GuidedDepthResult:
    layers = ["r1", "r2", "r3", "r4", "r5"]
    corr = {k: np.array([v, v]) for k, v in upper.items()}
    maps = {k: torch.zeros(2, 3, 4, 4) for k in upper}
    return GuidedDepthResult(torch.zeros(2, 3, 4, 4), torch.zeros(2), layers, maps, maps, corr, corr)


TRAINED = fake_depth({6: 0.0, 5: 0.0, 4: 0.0, 3: 0.03, 2: 0.08, 1: 0.23})


def test_recovery_depth_accepts_the_measured_k_and_explains_the_others():
    verdict(course.check_recovery_depth(solutions.recovery_k, TRAINED), "correct", "from k = 1")
    verdict(course.check_recovery_depth(np.int64(1), TRAINED), "correct")
    verdict(course.check_recovery_depth(3, TRAINED), "wrong", "At k = 3", "0.03", "recover little")
    verdict(course.check_recovery_depth(6, TRAINED), "wrong", "none (the gradient)")
    untrained = fake_depth({6: 0.0, 5: 0.18, 4: 0.23, 3: 0.28, 2: 0.33, 1: 0.41})
    verdict(course.check_recovery_depth(1, untrained), "wrong", "Already at k = 4", "0.23")
    verdict(course.check_recovery_depth(9, TRAINED), "wrong", "not a layer")
    verdict(course.check_recovery_depth("1", TRAINED), "wrong", "whole number")
    verdict(course.check_recovery_depth(True, TRAINED), "wrong", "whole number")
    verdict(course.check_recovery_depth(..., TRAINED), "not done")
    assert course.first_recovering_k(TRAINED) == 1 and course.first_recovering_k(untrained) == 4


# -- 4.5 ----------------------------------------------------------------------------------------------


def test_same_picture_prediction():
    verdict(course.check_same_picture_prediction(solutions.same_picture), "correct", "same hits")
    verdict(course.check_same_picture_prediction("100 minus"), "wrong", "one peak for both trials")
    verdict(course.check_same_picture_prediction("zero"), "wrong", "still lands on some object")
    verdict(course.check_same_picture_prediction("same"), "wrong", "one of 'equal'")
    verdict(course.check_same_picture_prediction(["equal"]), "wrong", "one of 'equal'")
    verdict(course.check_same_picture_prediction(...), "not done")


@pytest.fixture(scope="module")
def game():
    """Two 8x8 images, object A in the left half and B in the right; 'sharp' peaks on the named object,
    'blind' on object A for both classes, 'center' at the centre."""
    masks = torch.zeros(2, 2, 8, 8, dtype=torch.bool)
    masks[:, 0, 2:6, 0:2], masks[:, 1, 2:6, 6:8] = True, True
    points = {
        "sharp": np.array([[4, 1], [4, 7], [3, 0], [3, 6]]),
        "blind": np.array([[4, 1], [4, 1], [3, 0], [3, 0]]),
        "center": np.array([[4, 4]] * 4),
    }
    own = masks.reshape(-1, 8, 8).numpy()
    hits = {m: dl.metrics.pointing_hits(p, own, 1.0) for m, p in points.items()}
    labels = np.array([0, 1, 2, 3])
    return PointingResult(hits, labels, 1.0, points), masks


def test_swapped_game_accepts_the_masks_swapped_and_explains_the_rest(game):
    real, masks = game
    expected = course.swapped_hits(real, masks)
    np.testing.assert_array_equal(expected["sharp"], [False] * 4)  # each peak is on the named object
    np.testing.assert_array_equal(expected["blind"], [False, True, False, True])  # the same hits, reordered
    np.testing.assert_array_equal(real.hits["blind"], [True, False, True, False])
    swapped = PointingResult(expected, real.labels, 1.0, real.points)
    verdict(course.check_swapped_game(swapped, real, masks), "correct")
    verdict(course.check_swapped_game(real, real, masks), "wrong", "real game's hits", "flip(1)")
    scrambled = {m: ~h for m, h in expected.items()}
    verdict(
        course.check_swapped_game(PointingResult(scrambled, real.labels, 1.0, real.points), real, masks),
        "wrong",
        "neither",
    )
    half = PointingResult({m: h[:2] for m, h in expected.items()}, real.labels[:2], 1.0, real.points)
    verdict(course.check_swapped_game(half, real, masks), "wrong", "same 2 two-object images")
    verdict(
        course.check_swapped_game({"sharp": 0.1}, real, masks), "wrong", "what sanity.pointing_game returns"
    )
    other = PointingResult({"grad_cam": expected["sharp"]}, real.labels, 1.0, real.points)
    verdict(course.check_swapped_game(other, real, masks), "wrong", "real game's methods")
    verdict(course.check_swapped_game(..., real, masks), "not done")


def test_the_swapped_game_of_pointing_game_is_what_the_checker_expects(model):
    data = dl.data.shapes(3, seed=dl.train.HELDOUT_SEED, objects=2, offset=400)
    real = sanity.pointing_game(model, data.images, data.labels, data.masks)
    swapped = sanity.pointing_game(model, data.images, data.labels, data.masks.flip(1))
    for method, hits in course.swapped_hits(real, data.masks).items():
        np.testing.assert_array_equal(swapped.hits[method], hits)
    verdict(course.check_swapped_game(swapped, real, data.masks), "correct")
    apart = course.peaks_apart(real)
    assert apart["center"] == 0.0 and set(apart) == {*dl.rules.BUILTIN_NAMES, "center"}


# -- 4.6 ----------------------------------------------------------------------------------------------


def test_pointing_statements():
    verdict(
        course.check_pointing_statements(set(solutions.pointing_statements)),
        "correct",
        "different properties",
    )
    verdict(course.check_pointing_statements("a, c, e"), "correct")
    verdict(course.check_pointing_statements(["A", "C", "E"]), "correct")
    verdict(course.check_pointing_statements({"a", "b", "c", "e"}), "wrong", "(b) is false", "swapped")
    verdict(course.check_pointing_statements({"a", "c", "d", "e"}), "wrong", "(d) is false", "gradient")
    verdict(course.check_pointing_statements({"a", "c"}), "wrong", "(e) is true", "selectivity")
    verdict(course.check_pointing_statements({"c", "e"}), "wrong", "(a) is true", "4096 pixels")
    verdict(course.check_pointing_statements({"a", "z"}), "wrong", "'z' is not a statement")
    verdict(course.check_pointing_statements(3), "wrong", "set of letters")
    verdict(course.check_pointing_statements(...), "not done")
    assert {letter for letter, (_, true) in course.POINTING_STATEMENTS.items() if true} == set(
        solutions.pointing_statements
    )
