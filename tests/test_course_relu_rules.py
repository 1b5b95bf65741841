"""Notebook 01's course module: the readable rules against the library's, and each exercise's checker
fed its solution, typical wrong answers, and the student version's ``...``."""

from __future__ import annotations

import pytest
import torch

import deconvlab as dl
from deconvlab.course import relu_rules
from deconvlab.course.relu_rules import (
    check_guided_function,
    check_hand_maps,
    check_quadrants,
    check_relu_star,
    check_same_for_every_input,
)

RULES = dl.rules.BUILTIN_NAMES


def wrong_saying(feedback, *words):
    assert feedback.status == "wrong", feedback
    for word in words:
        assert word in feedback.message, (word, feedback.message)


# --- the readable forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_readable_form_gives_the_library_rules_numbers_on_every_edge_case(rule, seed):
    x, p = relu_rules.edge_cases(seed)
    assert (x == 0).any() and (p == 0).any() and torch.signbit(x[x == 0]).any()  # -0.0 is among them
    fused = dl.get_rule(rule).backward(x, p)
    readable = relu_rules.READABLE[rule](x, p)
    assert torch.equal(fused, readable)
    differs = torch.signbit(fused) != torch.signbit(readable)
    assert (fused[differs] == 0).all() and (readable[differs] == 0).all()  # only the sign of zeros


@pytest.mark.parametrize("rule", RULES)
def test_the_readable_form_gives_the_library_rules_map_in_a_network(rule, cnn, images):
    """Registered as user rules, the readable forms give the built-in rules' maps."""
    mine = dl.register_rule(f"readable_{rule}", relu_rules.READABLE[rule])
    assert torch.equal(dl.attribute(cnn, images, 1, rule=mine), dl.attribute(cnn, images, 1, rule=rule))


def test_the_readable_forms_make_boolean_masks_and_the_fused_ones_do_not():
    x, p = torch.randn(2, 100)
    assert relu_rules.new_tensors(relu_rules.guided_backprop, x, p) == [
        "gt -> bool",
        "mul -> float32",
        "gt -> bool",
        "mul -> float32",
    ]
    for rule in RULES:
        assert len(relu_rules.new_tensors(dl.get_rule(rule).backward, x, p)) == 1


def test_an_infinite_signal_on_a_closed_gate_is_where_the_forms_differ():
    x, p = torch.tensor([-1.0]), torch.tensor([float("inf")])
    assert relu_rules.gradient(x, p).isnan().all()
    assert dl.get_rule("gradient").backward(x, p).item() == 0


# --- 1.1 quadrants ----------------------------------------------------------------------------------

QUADRANTS = {"gradient": {"++", "+-"}, "deconvnet": {"++", "-+"}, "guided_backprop": {"++"}}


def test_quadrants():
    assert check_quadrants(QUADRANTS).passed
    assert check_quadrants({"gradient": ["++", "+-"], "deconvnet": {"++", "-+"}, "guided": "++"}).passed
    wrong_saying(
        check_quadrants({**QUADRANTS, "deconvnet": {"++"}}), "DeConvNet also passes p at x < 0, p > 0"
    )
    wrong_saying(check_quadrants({**QUADRANTS, "gradient": {"++"}}), "x > 0, p < 0", "[x > 0] is open")
    wrong_saying(
        check_quadrants({**QUADRANTS, "guided_backprop": {"++", "-+"}}),
        "does not pass p at x < 0, p > 0",
        "[x > 0] is closed",
    )
    wrong_saying(check_quadrants({**QUADRANTS, "gradient": {"x>0"}}), "no quadrant")
    wrong_saying(check_quadrants({"gradient": {"++", "+-"}}), "no entry for 'deconvnet'")
    wrong_saying(check_quadrants([("gradient", {"++"})]), "should be a dict")
    assert check_quadrants(...).status == "not done"
    assert check_quadrants({"gradient": ..., "deconvnet": ..., "guided_backprop": ...}).status == "not done"


# --- 1.2 ReLU* ----------------------------------------------------------------------------------------


def my_gradient(x, p):
    return p * (x > 0)


def my_deconvnet(x, p):
    return p * (p > 0)


def my_guided_backprop(x, p):
    return p * (x > 0) * (p > 0)


MINE = {"gradient": my_gradient, "deconvnet": my_deconvnet, "guided_backprop": my_guided_backprop}


def test_relu_star():
    assert check_relu_star(MINE).passed
    fused = {rule: dl.get_rule(rule).backward for rule in RULES}
    assert check_relu_star(fused).passed
    wrong_saying(
        check_relu_star({**MINE, "gradient": lambda x, p: p * (x >= 0)}),
        "At x = 0 and p > 0",
        "x > 0, not x >= 0",
    )
    wrong_saying(
        check_relu_star({**MINE, "deconvnet": lambda x, p: p * (x > 0)}),
        "At x < 0 and p > 0 DeConvNet passes p",
        "reads only p",
    )
    wrong_saying(
        check_relu_star({**MINE, "guided_backprop": lambda x, p: p * (x > 0)}),
        "At x > 0 and p < 0 guided backprop gives 0",
        "[p > 0] is closed",
    )
    wrong_saying(check_relu_star({**MINE, "gradient": lambda x, p: x.clamp(min=0)}), "passes p", "gave 0.5")
    wrong_saying(check_relu_star({**MINE, "deconvnet": lambda x, p: p > 0}), "booleans")
    wrong_saying(check_relu_star({**MINE, "deconvnet": lambda x, p: p if p > 0 else 0}), "`if` on a tensor")

    def in_place(x, p):
        p[x <= 0] = 0
        return p

    wrong_saying(check_relu_star({**MINE, "gradient": in_place}), "in place")

    def stub(x, p): ...

    pending = check_relu_star({**MINE, "deconvnet": stub, "guided_backprop": stub})
    assert pending.status == "not done" and "deconvnet and guided_backprop" in pending.message
    assert check_relu_star(...).status == "not done"


# --- 1.3 an autograd Function -----------------------------------------------------------------------


class GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, p):
        (x,) = ctx.saved_tensors
        return p * (x > 0) * (p > 0)


class GradientReLU(GuidedReLU):
    @staticmethod
    def backward(ctx, p):
        (x,) = ctx.saved_tensors
        return p * (x > 0)


class DeconvReLU(GuidedReLU):
    @staticmethod
    def backward(ctx, p):
        return p.clamp(min=0)


class Identity(GuidedReLU):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()


class NoForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): ...

    @staticmethod
    def backward(ctx, p): ...


class NoBackward(GuidedReLU):
    @staticmethod
    def backward(ctx, p): ...


def test_guided_function():
    said = check_guided_function(GuidedReLU)
    assert said.passed and "dl.attribute" in said.message
    wrong_saying(check_guided_function(GradientReLU), "At x > 0 and p < 0", "[p > 0] is closed")
    wrong_saying(check_guided_function(DeconvReLU), "At x < 0 and p > 0", "[x > 0] is closed")
    wrong_saying(check_guided_function(Identity), "forward should compute ReLU")
    wrong_saying(check_guided_function(torch.nn.ReLU), "subclass of torch.autograd.Function")
    wrong_saying(check_guided_function(my_guided_backprop), "subclass of torch.autograd.Function")
    assert check_guided_function(NoForward).status == "not done"
    pending = check_guided_function(NoBackward)
    assert pending.status == "not done" and "backward" in pending.message
    assert check_guided_function(...).status == "not done"


def test_the_guided_check_network_equals_dl_attribute_with_the_libraries_own_relu():
    images = dl.data.shapes(2, seed=3, size=32).images
    net = relu_rules.guided_check_network()
    assert torch.equal(net(images), relu_rules.guided_check_network()(images))  # fixed weights
    assert dl.attribute(net, images, 2).abs().sum() > 0


# --- 1.4 the tiny network by hand --------------------------------------------------------------------

BY_HAND = {
    "gradient": [[0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0]],
    "deconvnet": [[2, 3, 3, 1], [3, 5, 5, 2], [3, 5, 5, 2], [1, 2, 2, 1]],
    "guided_backprop": [[0, 1, 1, 1], [1, 3, 3, 2], [1, 3, 3, 2], [1, 2, 2, 1]],
}


def test_hand_maps():
    assert check_hand_maps(BY_HAND).passed
    assert check_hand_maps({rule: torch.tensor(value) for rule, value in BY_HAND.items()}).passed
    wrong_saying(
        check_hand_maps({**BY_HAND, "deconvnet": BY_HAND["guided_backprop"]}), "map of guided_backprop"
    )
    wrong_saying(check_hand_maps({**BY_HAND, "deconvnet": [[2, 1], [1, 1]]}), "2 × 2", "3 × 3 windows")
    transposed = [list(row) for row in zip(*BY_HAND["gradient"])]
    wrong_saying(check_hand_maps({**BY_HAND, "gradient": transposed}), "transposed")
    off_by_one = [row[:] for row in BY_HAND["deconvnet"]]
    off_by_one[1][1] = 4
    wrong_saying(
        check_hand_maps({**BY_HAND, "deconvnet": off_by_one}),
        "pixel (row 1, column 1) should be 5",
        "4 windows",
    )
    corner = [row[:] for row in BY_HAND["deconvnet"]]
    corner[0][0] = 1
    wrong_saying(check_hand_maps({**BY_HAND, "deconvnet": corner}), "1 window (top-left)")
    wrong_saying(check_hand_maps({**BY_HAND, "gradient": "zeros"}), "four rows of four numbers")
    assert check_hand_maps({**BY_HAND, "deconvnet": ...}).status == "not done"
    assert check_hand_maps(...).status == "not done"


# --- 1.5 one map for every input ------------------------------------------------------------------------


def test_same_for_every_input():
    assert check_same_for_every_input({"deconvnet"}).passed
    assert check_same_for_every_input("deconvnet").passed
    wrong_saying(check_same_for_every_input({"deconvnet", "guided"}), "Not guided_backprop", "reads x")
    wrong_saying(check_same_for_every_input({"gradient", "deconvnet"}), "Not gradient")
    wrong_saying(check_same_for_every_input(set()), "never reads x")
    wrong_saying(check_same_for_every_input({"deconv"}), "no rule")
    assert check_same_for_every_input(...).status == "not done"


def test_the_answer_of_1_5_holds_on_the_pool_free_network():
    images = dl.data.shapes(6, seed=5).images
    maps = dl.attribute(dl.toynets.no_pool_network(), images, 4, rules=RULES)
    for rule in RULES:
        same = all(torch.equal(single, maps[rule][0]) for single in maps[rule][1:])
        assert same == (rule == "deconvnet"), rule
