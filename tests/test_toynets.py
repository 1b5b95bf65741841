"""The hand-computable networks of notebook 01, checked against sums done without autograd."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deconvlab as dl
from deconvlab import toynets

RULES = ["gradient", "deconvnet", "guided_backprop"]


def _window_sums() -> np.ndarray:
    """3×3 window sums of arange(16) on a 4×4 grid, by explicit loops."""
    image = np.arange(16).reshape(4, 4)
    return np.array([[image[a : a + 3, b : b + 3].sum() for b in range(2)] for a in range(2)])


def _hand_backward(rule: str, weights, biases) -> np.ndarray:
    """The tiny network's backward pass written out: final ReLU, linear, ReLU, transposed conv."""
    pre = np.concatenate([(_window_sums() + b).ravel() for b in biases]).astype(float)
    out = float(np.maximum(pre, 0) @ np.asarray(weights, float))
    gates = {"x": lambda x, p: x > 0, "p": lambda x, p: p > 0}
    opened = {"gradient": ["x"], "deconvnet": ["p"], "guided_backprop": ["x", "p"]}[rule]

    def relu_star(x, p):
        return p * np.all([gates[g](x, p) for g in opened], axis=0)

    p_top = relu_star(np.array(out), np.array(1.0))
    p_hidden = relu_star(pre, p_top * np.asarray(weights, float))
    signal = np.zeros((4, 4))
    for channel in range(2):
        for index in range(4):
            a, b = divmod(index, 2)
            signal[a : a + 3, b : b + 3] += p_hidden[channel * 4 + index]  # all-ones 3×3 kernel
    return signal


def test_tiny_input_is_arange():
    x = toynets.tiny_input()
    assert x.shape == (1, 1, 4, 4) and x.dtype == torch.float32
    assert torch.equal(x.flatten(), torch.arange(16.0))


def test_tiny_network_preactivations_match_window_sums():
    net, x = toynets.tiny_network(), toynets.tiny_input()
    inputs = toynets.relu_inputs(net, x)
    expected = np.stack([_window_sums() - 50, _window_sums() - 75])
    assert np.array_equal(inputs["relu1"][0].numpy(), expected)
    assert inputs["relu1"].flatten().tolist() == [-5, 4, 31, 40, -30, -21, 6, 15]
    assert inputs["relu2"].item() == 54.0  # 4 + 31 + 40 - 6 - 15
    assert net(x).item() == 54.0


@pytest.mark.parametrize("weights", [toynets.TINY_LINEAR_WEIGHTS, (1, 1, -1, -1, 1, 1, 1, -1)])
def test_tiny_network_maps_match_hand_backward(weights):
    net, x = toynets.tiny_network(weights), toynets.tiny_input()
    maps = dl.attribute(net, x, 0, rules=RULES)
    for rule in RULES:
        assert np.array_equal(maps[rule][0, 0].numpy(), _hand_backward(rule, weights, toynets.TINY_BIASES))


def test_tiny_network_literal_maps():
    maps = dl.attribute(toynets.tiny_network(), toynets.tiny_input(), 0, rules=RULES)
    assert maps["gradient"][0, 0].tolist() == [[0, 1, 1, 1]] * 3 + [[0, 0, 0, 0]]
    assert maps["deconvnet"][0, 0].tolist() == [[2, 3, 3, 1], [3, 5, 5, 2], [3, 5, 5, 2], [1, 2, 2, 1]]
    assert maps["guided_backprop"][0, 0].tolist() == [[0, 1, 1, 1], [1, 3, 3, 2], [1, 3, 3, 2], [1, 2, 2, 1]]


def test_tiny_network_closed_final_gate():
    net = toynets.tiny_network((1, 1, -1, -1, 1, 1, 1, -1))
    assert toynets.relu_inputs(net, toynets.tiny_input())["relu2"].item() == -76.0
    maps = dl.attribute(net, toynets.tiny_input(), 0, rules=RULES)
    assert not maps["gradient"].any() and not maps["guided_backprop"].any()
    assert maps["deconvnet"][0, 0].tolist() == [[2, 4, 4, 2], [3, 5, 5, 2], [3, 5, 5, 2], [1, 1, 1, 0]]


def test_tiny_network_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="8 linear weights"):
        toynets.tiny_network((1, 1, 1))


def test_relu_free_network_rules_coincide_with_autograd():
    net = toynets.relu_free_network()
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        maps = dl.attribute(net, x, 2, rules=RULES)
    assert any(issubclass(w.category, dl.NoReLUWarning) for w in caught)
    leaf = x.clone().requires_grad_()
    (plain,) = torch.autograd.grad(net(leaf)[:, 2].sum(), leaf)  # no rule anywhere
    for rule in RULES:
        assert torch.equal(maps[rule], plain)


def test_no_pool_network_deconvnet_is_input_independent():
    net = toynets.no_pool_network()
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    maps = dl.attribute(net, x, 1, rules=RULES)
    for i in range(1, 4):
        assert torch.equal(maps["deconvnet"][i], maps["deconvnet"][0])
        assert not torch.equal(maps["gradient"][i], maps["gradient"][0])
        assert not torch.equal(maps["guided_backprop"][i], maps["guided_backprop"][0])


def test_max_pooling_makes_deconvnet_input_dependent():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)
    )
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    maps = dl.attribute(net, x, 0, rule="deconvnet")
    assert not torch.equal(maps[0], maps[1])


def test_networks_are_reproducible():
    for build in (toynets.relu_free_network, toynets.no_pool_network):
        a, b, c = build(0), build(0), build(1)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert not torch.equal(next(a.parameters()), next(c.parameters()))
        assert not a.training


def test_relu_inputs_sees_values_before_inplace_relu():
    conv = nn.Conv2d(1, 1, 1)
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 5, 5, generator=torch.Generator().manual_seed(4))
    recorded = toynets.relu_inputs(net, x)["1"]
    assert (recorded < 0).any()
    assert torch.equal(recorded, conv(x).detach())
    assert not net[1]._forward_pre_hooks  # hooks removed
