"""Notebook 05's course module: its models do what the exercises say, and each checker is fed its
solution, typical wrong answers, and the student version's ``...``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import deconvlab as dl
from deconvlab.course import your_model
from deconvlab.course.your_model import (
    check_dense_target,
    check_far_below,
    check_guided_above,
    check_input_independent,
    check_recovery_prediction,
    check_warned_names,
)


def wrong_saying(feedback, *words):
    assert feedback.status == "wrong", feedback
    for word in words:
        assert word in feedback.message, (word, feedback.message)


# --- 5.1 ---------------------------------------------------------------------------------------------


def test_the_warning_names_exactly_the_non_relu_activations_of_the_mixed_net():
    images = dl.data.shapes(2, seed=0, size=32).images
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dl.attribute(your_model.mixed_activation_net(), images, 0, rule="deconvnet")
    messages = [str(w.message) for w in caught if issubclass(w.category, dl.UnsupportedActivationWarning)]
    assert len(messages) == 1
    named = {
        label
        for label in ("SiLU", "GELU", "LeakyReLU", "ReLU6", "ReLU", "clamp")
        if f" {label} ×" in messages[0]
    }
    assert named == set(your_model.WARNED)
    assert len(dl.explain_rules(your_model.mixed_activation_net(), images, {"*": "deconvnet"})) == 1


def test_warned_names():
    assert check_warned_names({"SiLU", "GELU", "LeakyReLU", "ReLU6"}).passed
    assert check_warned_names(["nn.SiLU", "F.gelu", "leaky_relu", "nn.ReLU6()"]).passed
    wrong_saying(check_warned_names({"SiLU", "GELU", "LeakyReLU"}), "ReLU6", "not a ReLU")
    wrong_saying(check_warned_names({"SiLU", "LeakyReLU", "ReLU6"}), "F.gelu is a function call")
    wrong_saying(check_warned_names({"SiLU", "GELU", "LeakyReLU", "ReLU6", "ReLU"}), "Not ReLU")
    wrong_saying(check_warned_names({"SiLU", "GELU", "LeakyReLU", "ReLU6", "clamp"}), "Not clamp", "F.relu")
    wrong_saying(check_warned_names({"SiLU", "GELU", "LeakyReLU", "ReLU6", "Tanh"}), "'Tanh' does not run")
    wrong_saying(check_warned_names(4), "set of names")
    assert check_warned_names(...).status == "not done"


# --- 5.2 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("letter", "abcdef")
def test_each_candidate_model_is_input_independent_exactly_as_the_answer_says(letter):
    images = dl.data.shapes(6, seed=2, size=32).images
    model = your_model.candidate_models()[letter].build()
    assert your_model.deconvnet_same_for_all(model, images) == (letter in your_model.INPUT_INDEPENDENT)


def test_input_independent():
    assert check_input_independent({"a", "c", "e"}).passed
    assert check_input_independent("a, c, e").passed
    wrong_saying(check_input_independent({"a", "b", "c", "e"}), "Not b", "switches")
    wrong_saying(check_input_independent({"a", "c", "d", "e"}), "Not d", "GELU")
    wrong_saying(check_input_independent({"a", "c", "e", "f"}), "Not f", "global max-pooling")
    wrong_saying(check_input_independent({"a", "c"}), "missed one", "(e)")
    wrong_saying(check_input_independent({"a"}), "missed one", "(c)", "batch norm")
    wrong_saying(check_input_independent({"a", "z"}), "'z' is none of the models")
    assert check_input_independent(...).status == "not done"


# --- 5.3 ---------------------------------------------------------------------------------------------


def test_far_below():
    assert check_far_below("deconvnet").passed
    assert check_far_below("DeConvNet").passed
    wrong_saying(check_far_below("guided_backprop"), "That is t = 0")
    wrong_saying(check_far_below("guided"), "That is t = 0")
    wrong_saying(check_far_below("gradient"), "[p > 0] stays")
    wrong_saying(check_far_below("none"), "does equal one of them")
    wrong_saying(check_far_below("lrp"), "no rule")
    wrong_saying(check_far_below(0), "rule name as a string")
    assert check_far_below(...).status == "not done"


def test_the_thresholded_rule_far_below_every_input_is_deconvnet_on_the_teaching_model():
    model = dl.models.teaching_model()
    x = dl.data.shapes(2, seed=4).images
    smallest = min(float(inputs.min()) for inputs in dl.toynets.relu_inputs(model, x).values())
    rule = dl.register_rule("far_below", lambda x, p: p * (x > smallest - 1) * (p > 0))
    assert torch.equal(dl.attribute(model, x, 1, rule=rule), dl.attribute(model, x, 1, rule="deconvnet"))


# --- 5.4 and 5.5 ----------------------------------------------------------------------------------------

GUIDED = "guided_backprop"


def test_guided_above():
    assert check_guided_above({"features.7": GUIDED, "features.9": GUIDED, "features.12": GUIDED}).passed
    assert check_guided_above(dl.RuleMap({"features.[7-9]": GUIDED, "features.1?": GUIDED})).passed
    assert check_guided_above(dl.RuleMap({"features.[14]": "gradient"}, default="guided")).passed
    wrong_saying(
        check_guided_above({"features.1*": GUIDED, "features.[7-9]": GUIDED}),
        "The ReLU in features.1 gets guided_backprop",
        "also matches 'features.1' itself",
    )
    wrong_saying(
        check_guided_above({"features.7": GUIDED, "features.9": GUIDED}),
        "features.12 gets gradient from the default",
        "above features.6",
    )
    wrong_saying(check_guided_above({"*": GUIDED}), "features.1 gets guided_backprop from the entry '*'")
    wrong_saying(check_guided_above({"features.70": GUIDED}), "refuses the map", "matches no module")
    wrong_saying(check_guided_above("guided_backprop"), "one rule for every ReLU")
    wrong_saying(check_guided_above(7), "not a int")
    assert check_guided_above(...).status == "not done"


def test_guided_below_recovers_the_image_better_than_guided_on_top():
    shapes = dl.data.shapes(16, seed=11)
    maps = your_model.recovery_maps(dl.models.teaching_model(), shapes.images, shapes.labels.tolist())
    assert list(maps) == ["gradient", GUIDED, "A: guided on top", "B: guided below"]
    edges = {name: dl.metrics.edge_correlation(signal, shapes.images) for name, signal in maps.items()}
    assert (edges["B: guided below"] > edges["A: guided on top"]).sum() >= 13
    assert np.median(edges["B: guided below"]) > np.median(edges["A: guided on top"]) + 0.1


def test_recovery_prediction():
    assert check_recovery_prediction("B").passed
    assert check_recovery_prediction("b").passed
    wrong_saying(check_recovery_prediction("A"), "Not A", "full resolution")
    wrong_saying(check_recovery_prediction("same"), "They differ")
    wrong_saying(check_recovery_prediction("C"), "Answer 'A', 'B' or 'same'")
    wrong_saying(check_recovery_prediction(2), "Answer 'A', 'B' or 'same'")
    assert check_recovery_prediction(...).status == "not done"


# --- 5.6 ---------------------------------------------------------------------------------------------


def test_dense_target():
    c, i, j = your_model.DENSE_TARGET
    assert dl.data.CLASSES[c] == "star"
    assert check_dense_target((c, i, j)).passed
    seed = torch.zeros(3, 6, 32, 32)
    seed[:, c, i, j] = 1.0
    assert check_dense_target(seed).passed
    assert check_dense_target([(c, i, j)] * 3).passed  # one tuple per example, all the same
    wrong_saying(check_dense_target(c), "at every position")
    wrong_saying(check_dense_target([c, i, j]), "one class per example", "tuple")
    wrong_saying(check_dense_target(torch.tensor([c, i, j])), "one class per example")
    wrong_saying(check_dense_target((i, j, c)), "(class, row, column)")
    wrong_saying(check_dense_target((c, j, i)), "Row and column are swapped")
    wrong_saying(check_dense_target((i, j)), "not a class")
    wrong_saying(check_dense_target((0, c, i, j)), "batch index")
    wrong_saying(check_dense_target((c - 1, i, j)), "another unit")
    wrong_saying(check_dense_target((c, i, 99)), "refuses this target", "out of range")
    assert check_dense_target(...).status == "not done"


def test_the_dense_maps_are_zero_outside_the_units_receptive_field():
    x = dl.data.shapes(2, seed=7).images
    signal = dl.attribute(your_model.dense_model(), x, your_model.DENSE_TARGET)
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[17:25, 37:45] = False
    assert not signal[..., outside].any() and signal[..., ~outside].any()
