"""The theory's closed forms, finite differences, and two facts the course states."""

import pytest
import torch
from torch import nn

import deconvlab as dl

RULES = ["gradient", "deconvnet", "guided_backprop"]


def _one_hidden_layer(seed):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(6, 9, bias=False), nn.ReLU(), nn.Linear(9, 1, bias=False)).double()
    return net, net[0].weight.detach(), net[2].weight.detach()[0]


@pytest.mark.parametrize("seed", range(5))
def test_one_hidden_layer_closed_forms(seed):
    """gradient = W1ᵀ(w2⊙[W1x>0]), DeConvNet = W1ᵀ relu(w2), GBP = W1ᵀ(relu(w2)⊙[W1x>0])."""
    net, w1, w2 = _one_hidden_layer(seed)
    x = torch.randn(1, 6, dtype=torch.float64)
    gate = (w1 @ x[0] > 0).double()
    expected = {
        "gradient": w1.T @ (w2 * gate),
        "deconvnet": w1.T @ w2.clamp(min=0),
        "guided_backprop": w1.T @ (w2.clamp(min=0) * gate),
    }
    got = dl.attribute(net, x, 0, rules=RULES)
    for rule in RULES:
        torch.testing.assert_close(got[rule][0], expected[rule])


def test_gradient_matches_finite_differences(cnn, images):
    x = images[:1]
    analytic = dl.attribute(cnn, x, 3, rule="gradient")[0]
    eps = 1e-6
    numeric = torch.zeros_like(x[0])
    with torch.no_grad():
        for index in range(x[0].numel()):
            step = torch.zeros_like(x).view(-1)
            step[index] = eps
            step = step.view_as(x)
            numeric.view(-1)[index] = (cnn(x + step)[0, 3] - cnn(x - step)[0, 3]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_gradient_rule_equals_plain_autograd(cnn, images):
    x = images.clone().requires_grad_(True)
    cnn(x)[:, 2].sum().backward()
    torch.testing.assert_close(dl.attribute(cnn, images, 2, rule="gradient"), x.grad)


def test_without_relu_the_three_rules_coincide(images):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 3),
    ).double()
    with pytest.warns(dl.NoReLUWarning), pytest.warns(dl.UnsupportedActivationWarning, match=r"Tanh ×1 call"):
        got = dl.attribute(net, images, 1, rules=RULES)
    torch.testing.assert_close(got["deconvnet"], got["gradient"])
    torch.testing.assert_close(got["guided_backprop"], got["gradient"])


def test_without_max_pooling_deconvnet_ignores_the_input():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3),
    ).double()
    first, second = torch.randn(2, 1, 3, 16, 16, dtype=torch.float64)
    deconv = [dl.attribute(net, x, 2, rule="deconvnet") for x in (first, second)]
    torch.testing.assert_close(deconv[0], deconv[1])
    grads = [dl.attribute(net, x, 2, rule="gradient") for x in (first, second)]
    assert not torch.allclose(grads[0], grads[1])  # the gradient does depend on it


def test_with_max_pooling_deconvnet_depends_on_the_input_through_the_switches(cnn):
    first, second = torch.randn(2, 1, 3, 16, 16, dtype=torch.float64)
    assert not torch.allclose(
        dl.attribute(cnn, first, 2, rule="deconvnet"), dl.attribute(cnn, second, 2, rule="deconvnet")
    )
