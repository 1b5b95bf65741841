"""Notebook 03's checkers: each accepts the model answer and says what is wrong in typical mistakes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deconvlab as dl
from deconvlab import toynets
from deconvlab import zeiler_fergus as zf
from deconvlab.course.deconvnet import (
    TEACHING_RELUS,
    check_identical_layers,
    check_pool_free_projection,
    check_top9,
    check_unpool,
    layer_output,
    solutions,
)
from deconvlab.train import HELDOUT_SEED


def assert_wrong(feedback, *words):
    assert feedback.status == "wrong", feedback
    for word in words:
        assert word in feedback.message, (word, feedback.message)


# 3.1 ------------------------------------------------------------------------------------------


def test_3_1_accepts_scatter_and_max_unpool2d():
    assert check_unpool(solutions.unpool).passed
    assert check_unpool(lambda p, switches, size: F.max_unpool2d(p, switches, 2, output_size=size)).passed


def test_3_1_names_the_wrong_placement():
    def copied(p, switches, size):
        out = p.new_zeros(*p.shape[:2], *size)
        h, w = 2 * p.shape[-2], 2 * p.shape[-1]
        out[..., :h, :w] = p.repeat_interleave(2, -2).repeat_interleave(2, -1)
        return out

    assert_wrong(check_unpool(copied), "all four positions", "switch")
    assert_wrong(check_unpool(lambda p, s, size: copied(p, s, size) / 4), "average pooling")

    def corner(p, switches, size):
        out = p.new_zeros(*p.shape[:2], *size)
        out[..., 0 : 2 * p.shape[-2] : 2, 0 : 2 * p.shape[-1] : 2] = p
        return out

    assert_wrong(check_unpool(corner), "top-left corner")

    def swapped(p, switches, size):
        rows, cols = switches % size[1], switches // size[1]  # decoded the wrong way round
        out = p.new_zeros(*p.shape[:2], *size)
        n, c, _, _ = torch.meshgrid(*[torch.arange(k) for k in p.shape], indexing="ij")
        out[n, c, rows, cols] = p
        return out

    assert_wrong(check_unpool(swapped), "rows and columns swapped")


def test_3_1_says_when_the_shape_is_wrong_or_nothing_is_done():
    doubled = check_unpool(lambda p, switches, size: F.max_unpool2d(p, switches, 2))
    assert_wrong(doubled, "(1, 2, 7, 9)", "output_size=size")

    def doubled_by_hand(p, switches, size):
        return solutions.unpool(p, switches, (2 * p.shape[-2], 2 * p.shape[-1]))

    assert_wrong(check_unpool(doubled_by_hand), "(1, 2, 7, 9)", "(H, W) = size")

    def doubled_by_zero_padding(p, switches, size):
        return F.max_unpool2d(p, switches, 2, output_size=size)[..., : 2 * p.shape[-2], : 2 * p.shape[-1]]

    assert_wrong(check_unpool(doubled_by_zero_padding), "(1, 2, 7, 9)", "size = (H, W)")
    assert_wrong(
        check_unpool(lambda p, switches, size: torch.zeros(p.shape[0], p.shape[1], *size)), "zeros only"
    )
    assert_wrong(check_unpool(lambda p, switches, size: [1, 2]), "should return a tensor")

    def stub(p, switches, size): ...

    assert check_unpool(stub).status == "not done"
    assert check_unpool(...).status == "not done"


# 3.2 ------------------------------------------------------------------------------------------


def test_3_2_the_true_statement_holds_on_the_pool_free_network():
    """What the checker accepts: DeConvNet's projection of a fixed unit is one picture scaled by the activation."""
    net = toynets.no_pool_network()
    x = dl.data.shapes(6, seed=HELDOUT_SEED).images
    act = layer_output(net, x, "5")
    channel = int((act[:, :, 8, 8] > 0).sum(0).argmax())
    a = act[:, channel, 8, 8]
    assert bool((a > 0).sum() >= 2)
    maps = dl.project(net, x, "5", channel, (8, 8), rules=list(dl.rules.BUILTIN_NAMES))
    fired = a > 0
    scaled = {rule: signal[fired] / a[fired].view(-1, 1, 1, 1) for rule, signal in maps.items()}
    assert torch.allclose(
        scaled["deconvnet"], scaled["deconvnet"][:1].expand_as(scaled["deconvnet"]), atol=1e-6
    )
    for rule in ("gradient", "guided_backprop"):
        assert not torch.allclose(scaled[rule], scaled[rule][:1].expand_as(scaled[rule]), atol=1e-4)


def test_3_2_accepts_the_answer_and_explains_wrong_letters_and_rule_sets():
    assert check_pool_free_projection(solutions.pool_free, solutions.change_with_image).passed
    assert check_pool_free_projection("B", ["gradient", "guided"]).passed
    assert_wrong(check_pool_free_projection("a", set()), "x is ignored", "no switches")
    assert_wrong(check_pool_free_projection("c", set()), "scales with the activation")
    assert_wrong(check_pool_free_projection("d", set()), "ignores x")
    assert_wrong(
        check_pool_free_projection("b", set(dl.rules.BUILTIN_NAMES)), "DeConvNet's projection does not"
    )
    assert_wrong(check_pool_free_projection("b", {"gradient"}), "guided_backprop also change", "[x > 0]")
    assert_wrong(check_pool_free_projection("b", "gradient"), "set of names")
    assert_wrong(check_pool_free_projection("b", {"lrp"}), "not one of the rules")
    assert_wrong(check_pool_free_projection("z", set()), "one of the letters")
    assert check_pool_free_projection(..., set()).status == "not done"
    assert check_pool_free_projection("b", ...).status == "not done"


# 3.3 ------------------------------------------------------------------------------------------


def test_3_3_accepts_the_first_relu_only():
    assert check_identical_layers(solutions.identical_layers).passed
    assert check_identical_layers(("features.1",)).passed


def test_3_3_explains_deeper_layers_a_missing_first_layer_and_typos():
    assert_wrong(
        check_identical_layers(["features.1", "features.4"]), "At features.4 the two differ", "x ≤ 0"
    )
    assert_wrong(check_identical_layers(list(TEACHING_RELUS)), "differ")
    assert_wrong(check_identical_layers([]), "At features.1 the two are identical", "both gates are open")
    assert_wrong(check_identical_layers(["features.2"]), "not one of the five ReLU layers")
    assert_wrong(check_identical_layers("features.1"), "list of layer names")
    assert check_identical_layers(...).status == "not done"


# 3.4 ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teaching():
    return dl.models.teaching_model(), dl.data.shapes(64, seed=HELDOUT_SEED).images


def test_3_4_accepts_the_model_answer_equal_to_channel_maxima(teaching):
    model, images = teaching
    assert check_top9(solutions.top9, model, images).passed
    activations = layer_output(model, images, "features.7")
    maxima = zf.channel_maxima(model, images, ["features.7"])["features.7"]
    indices, positions = solutions.top9(activations, 3)
    assert torch.equal(indices, maxima.top(3).indices) and torch.equal(positions, maxima.top(3).positions)


def test_3_4_names_the_usual_ranking_mistakes(teaching):
    model, images = teaching

    def units(activations, channel):  # the nine strongest units, wherever they are
        feature = activations[:, channel].flatten(1)
        flat = feature.flatten().topk(9).indices
        width, plane = activations.shape[-1], feature.shape[1]
        where = flat % plane
        return flat // plane, torch.stack([where // width, where % width], 1)

    assert_wrong(check_top9(units, model, images), "appears more than once", "ranked units, not images")

    def by_mean(activations, channel):
        indices = activations[:, channel].mean((1, 2)).topk(9).indices
        return indices, solutions.top9(activations, channel)[1]

    assert_wrong(check_top9(by_mean, model, images), "mean activation")

    def ascending(activations, channel):
        indices, positions = solutions.top9(activations, channel)
        return indices.flip(0), positions.flip(0)

    assert_wrong(check_top9(ascending, model, images), "wrong order")

    def weakest(activations, channel):
        strongest = activations[:, channel].flatten(1).max(1).values
        return strongest.topk(9, largest=False).indices, torch.zeros(9, 2)

    assert_wrong(check_top9(weakest, model, images), "nine weakest")


def test_3_4_names_position_mistakes_and_not_done(teaching):
    model, images = teaching

    def swapped(activations, channel):
        indices, positions = solutions.top9(activations, channel)
        return indices, positions.flip(1)

    assert_wrong(check_top9(swapped, model, images), "(column, row)")

    def flat(activations, channel):
        indices, _ = solutions.top9(activations, channel)
        return indices, activations[indices, channel].flatten(1).argmax(1)

    assert_wrong(check_top9(flat, model, images), "one number per image", "(row, column)")
    assert_wrong(check_top9(lambda a, c: solutions.top9(a, c)[0], model, images), "two things")

    def stub(activations, channel): ...

    assert check_top9(stub, model, images).status == "not done"
