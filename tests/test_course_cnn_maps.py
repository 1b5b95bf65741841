"""Notebook 02's checkers: each accepts the model answer and says what is wrong in typical mistakes."""

from __future__ import annotations

import copy

import pytest
import torch.nn.functional as F
from torch import nn

import deconvlab as dl
from deconvlab.course.cnn_maps import (
    check_energy_on_object,
    check_guided_backprop,
    check_guided_grad_cam,
    check_last_relu,
    solutions,
)
from deconvlab.metrics import energy_concentration, mask_energy_fraction
from deconvlab.train import HELDOUT_SEED

RULES = dl.rules.BUILTIN_NAMES
LAYER = "features.12"


@pytest.fixture(scope="module")
def model():
    return dl.models.teaching_model()


@pytest.fixture(scope="module")
def data():
    return dl.data.shapes(6, seed=HELDOUT_SEED + 1)


@pytest.fixture(scope="module")
def maps(model, data):
    return dl.attribute(model, data.images, data.labels, rules=RULES)


def assert_wrong(feedback, *words):
    assert feedback.status == "wrong", feedback
    for word in words:
        assert word in feedback.message, (word, feedback.message)


# 2.1 ------------------------------------------------------------------------------------------


def test_2_1_accepts_identical_and_explains_each_wrong_letter():
    assert check_last_relu(solutions.last_relu).passed
    assert check_last_relu(" (A) ").passed
    assert_wrong(check_last_relu("b"), "sign")
    assert_wrong(check_last_relu("c"), "not been through any ReLU")
    assert_wrong(check_last_relu("d"), "no ReLU lies between")
    assert_wrong(check_last_relu("e"), "one of the letters a, b, c, d")
    assert_wrong(check_last_relu(1), "one of the letters")
    assert check_last_relu(...).status == "not done"


# 2.2 ------------------------------------------------------------------------------------------


def relu_hooked(backward_hook):
    """A student answer: a full backward hook on every nn.ReLU of a copy with in-place ReLUs turned off."""

    def answer(model, x, target):
        model = copy.deepcopy(model)
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
                module.register_full_backward_hook(backward_hook)
        x = x.clone().requires_grad_(True)
        model(x).gather(1, target.view(-1, 1)).sum().backward()
        return x.grad

    return answer


def test_2_2_accepts_the_model_answer_and_a_backward_hook_version():
    assert check_guided_backprop(solutions.guided_backprop).passed
    clip_grad_input = relu_hooked(lambda module, grad_in, grad_out: (grad_in[0].clamp(min=0),))
    assert check_guided_backprop(clip_grad_input).passed


def test_2_2_names_the_rule_a_wrong_hook_computes():
    plain = relu_hooked(lambda module, grad_in, grad_out: None)
    assert_wrong(check_guided_backprop(plain), "equals the gradient", "does not clip negative p")
    clip_grad_out = relu_hooked(lambda module, grad_in, grad_out: (grad_out[0].clamp(min=0),))
    assert_wrong(check_guided_backprop(clip_grad_out), "equals DeConvNet", "[x > 0]")


def test_2_2_catches_clipping_at_the_end_summed_targets_and_leftover_hooks():
    def clipped_at_the_end(model, x, target):
        return dl.attribute(model, x, target, rule="gradient").clamp(min=0)

    assert_wrong(check_guided_backprop(clipped_at_the_end), "clipped the final map")

    def all_targets(model, x, target):
        x = x.clone().requires_grad_(True)
        with dl.backward_rule("guided_backprop"):
            model(x)[:, target].sum().backward()
        return x.grad

    assert_wrong(check_guided_backprop(all_targets), "every image's target class")

    def clip(module, inputs, output):
        output.register_hook(lambda p: p.clamp(min=0))

    def leaves_hooks(model, x, target):
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.register_forward_hook(clip)
        x = x.clone().requires_grad_(True)
        model(x).gather(1, target.view(-1, 1)).sum().backward()
        return x.grad

    assert_wrong(check_guided_backprop(leaves_hooks), "leaves hooks", "remove()")

    def returns_handle(model, x, target):
        handles = [
            module.register_forward_hook(lambda m, i, o: o.register_hook(lambda p: p.clamp(min=0)))
            for module in model.modules()
            if isinstance(module, nn.ReLU)
        ]
        try:
            x = x.clone().requires_grad_(True)
            model(x).gather(1, target.view(-1, 1)).sum().backward()
        finally:
            for handle in handles:
                handle.remove()
        return x.grad

    assert_wrong(check_guided_backprop(returns_handle), "RemovableHandle", "return nothing")


def test_2_2_explains_the_in_place_error_of_full_backward_hooks_and_not_done():
    def in_place(model, x, target):
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.register_full_backward_hook(lambda m, gi, go: (gi[0].clamp(min=0),))
        x = x.clone().requires_grad_(True)
        model(x).gather(1, target.view(-1, 1)).sum().backward()
        return x.grad

    assert_wrong(check_guided_backprop(in_place), "RuntimeError", "in-place (inplace=True)")

    def stub(model, x, target): ...

    assert check_guided_backprop(stub).status == "not done"
    assert check_guided_backprop(...).status == "not done"
    assert_wrong(check_guided_backprop(lambda model, x, target: x[:, :1]), "shape")


# 2.3 ------------------------------------------------------------------------------------------


def test_2_3_accepts_the_right_prediction_and_measurement(maps, data):
    energy = {rule: mask_energy_fraction(maps[rule], data.masks) for rule in RULES}
    said = check_energy_on_object(solutions.most_on_object, energy, maps, data.masks)
    assert said.passed, said
    assert "guided backprop" in said.message
    assert check_energy_on_object("guided", energy, maps, data.masks).passed  # the alias


def test_2_3_a_right_measurement_with_a_wrong_prediction_says_which_rule_wins(maps, data):
    energy = {rule: mask_energy_fraction(maps[rule], data.masks) for rule in RULES}
    assert_wrong(
        check_energy_on_object("deconvnet", energy, maps, data.masks),
        "prediction is not",
        "guided backprop has the highest median",
        "never reads x",
    )
    assert_wrong(check_energy_on_object("gradient", energy, maps, data.masks), "not the gradient")
    assert_wrong(check_energy_on_object("smoothgrad", energy, maps, data.masks), "should be one of")


def test_2_3_names_the_wrong_measurement(maps, data):
    def measured(function):
        return {rule: function(rule) for rule in RULES}

    outside = measured(lambda rule: 1 - mask_energy_fraction(maps[rule], data.masks))
    assert_wrong(check_energy_on_object("guided_backprop", outside, maps, data.masks), "outside the mask")
    concentrated = measured(lambda rule: energy_concentration(maps[rule]))
    assert_wrong(
        check_energy_on_object("guided_backprop", concentrated, maps, data.masks), "energy_concentration"
    )
    medians = measured(lambda rule: mask_energy_fraction(maps[rule], data.masks).median())
    assert_wrong(check_energy_on_object("guided_backprop", medians, maps, data.masks), "one number")
    areas = measured(lambda rule: data.masks.float().mean((1, 2)))
    assert_wrong(check_energy_on_object("guided_backprop", areas, maps, data.masks), "areas")
    partial = {"gradient": outside["gradient"]}
    assert_wrong(
        check_energy_on_object("guided_backprop", partial, maps, data.masks), "no entry for 'deconvnet'"
    )
    assert check_energy_on_object("guided_backprop", ..., maps, data.masks).status == "not done"
    assert check_energy_on_object(..., outside, maps, data.masks).status == "not done"


# 2.4 ------------------------------------------------------------------------------------------


def test_2_4_accepts_the_model_answer(model, data):
    answer = solutions.guided_grad_cam(model, data.images, data.labels, LAYER)
    assert check_guided_grad_cam(answer, model, data.images, data.labels, layer=LAYER).passed


def test_2_4_names_the_wrong_factor_or_upsampling(model, data):
    x, y = data.images, data.labels
    cam = dl.grad_cam(model, x, y, layer=LAYER, upsample=None)
    guided = dl.attribute(model, x, y, rule="guided_backprop")

    def check(answer):
        return check_guided_grad_cam(answer, model, x, y, layer=LAYER)

    bilinear = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert_wrong(check(dl.attribute(model, x, y, rule="gradient") * bilinear), "the gradient's map")
    assert_wrong(check(guided * F.interpolate(cam, size=x.shape[-2:], mode="nearest")), "mode='nearest'")
    corners = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=True)
    assert_wrong(check(guided * corners), "align_corners=True")
    assert_wrong(check(guided * dl.grad_cam(model, x, y, layer=LAYER, relu=False)), "negative part")
    assert_wrong(check(guided), "guided backprop alone")
    assert_wrong(check(guided + bilinear), "added")
    assert_wrong(check(bilinear), "one channel", "the CAM alone")
    assert_wrong(check(guided[..., :8, :8] * cam), "upsample the CAM")
    other_layer = dl.guided_grad_cam(model, x, y, "features.9")
    assert_wrong(check(other_layer), "differs from dl.guided_grad_cam")
    assert check(...).status == "not done"
