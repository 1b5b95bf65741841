"""Zeiler–Fergus helpers against closed forms and independent computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deconvlab as dl
from deconvlab import zeiler_fergus as zf
from deconvlab.models import TeachingCNN

RELUS = ["features.1", "features.4", "features.7", "features.9", "features.12"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TeachingCNN().eval()


@pytest.fixture(scope="module")
def images():
    return dl.data.shapes(48, seed=3).images


def test_unpooling_is_the_backward_of_max_pooling():
    torch.manual_seed(1)
    x, grad = torch.randn(3, 4, 10, 12), torch.randn(3, 4, 5, 6)
    unpooled = zf.pool_backward_by_unpooling(x, grad)
    assert torch.equal(unpooled, zf.pool_backward_by_autograd(x, grad))
    # Closed form: each window has exactly one non-zero, the incoming value, at the window's argmax.
    windows = unpooled.unfold(2, 2, 2).unfold(3, 2, 2).reshape(3, 4, 5, 6, 4)
    assert torch.equal((windows != 0).sum(-1), torch.ones(3, 4, 5, 6, dtype=torch.long))
    assert torch.equal(windows.sum(-1), grad)
    at_max = x.unfold(2, 2, 2).unfold(3, 2, 2).reshape(3, 4, 5, 6, 4).argmax(-1)
    assert torch.equal(windows.abs().argmax(-1), at_max)


def test_unpooling_odd_size_and_stride_equal_kernel():
    x, grad = torch.randn(1, 2, 7, 7), torch.randn(1, 2, 2, 2)
    assert torch.equal(zf.pool_backward_by_unpooling(x, grad, 3), zf.pool_backward_by_autograd(x, grad, 3))


@pytest.mark.parametrize("stride,padding,size", [(1, 0, 9), (1, 1, 8), (2, 1, 9), (2, 1, 10), (3, 0, 11)])
def test_transposed_convolution_is_the_backward_of_convolution(stride, padding, size):
    torch.manual_seed(2)
    x, w = torch.randn(2, 4, size, size, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64)
    out = F.conv2d(x, w, stride=stride, padding=padding)
    grad = torch.randn_like(out)
    by_transpose = zf.conv_backward_by_transposed_conv(grad, w, (size, size), stride, padding)
    assert by_transpose.shape == x.shape
    assert torch.allclose(by_transpose, zf.conv_backward_by_autograd(x, w, grad, stride, padding))
    # Adjoint identity <W x, g> = <x, W^T g>, independent of autograd.
    assert torch.allclose((out * grad).sum(), (x * by_transpose).sum())


def test_receptive_field_closed_form(model):
    # 3x3 convs (pad 1) and 2x2 pools: size grows by 2*jump per conv, by jump per pool.
    expected = {
        "features.0": (3, 1, -1),
        "features.1": (3, 1, -1),
        "features.2": (4, 2, -1),
        "features.4": (8, 2, -3),
        "features.7": (18, 4, -7),
        "features.9": (26, 4, -11),
        "features.12": (46, 8, -19),
        "features": (54, 16, -19),
    }
    for layer, (size, jump, offset) in expected.items():
        assert zf.receptive_field(model, layer) == zf.ReceptiveField(
            (size, size), (jump, jump), (offset, offset)
        ), layer


def test_receptive_field_box_and_mask(model):
    rf = zf.receptive_field(model, "features.4")
    assert rf.box((0, 0), (64, 64)) == (0, 5, 0, 5)
    assert rf.box((5, 31), (64, 64)) == (7, 15, 59, 64)
    mask = rf.mask((5, 31), (64, 64))
    assert mask.sum() == 8 * 5 and mask[7:15, 59:].all()


def test_receptive_field_matches_gradient_support(model):
    """Independent check: the pixels a unit's gradient reaches with ReLUs open and pools averaging."""
    net = nn.Sequential(
        *[
            nn.AvgPool2d(2) if isinstance(m, nn.MaxPool2d) else nn.Identity() if isinstance(m, nn.ReLU) else m
            for m in model.features
        ]
    )
    for cut, layer in [(5, "features.4"), (10, "features.9"), (13, "features.12")]:
        x = torch.randn(1, 3, 64, 64, requires_grad=True)
        out = net[:cut](x)
        i, j = 3, 2
        out[0, :, i, j].sum().backward()
        support = x.grad[0].abs().sum(0) != 0
        assert torch.equal(support, zf.receptive_field(model, layer).mask((i, j), (64, 64))), layer


def test_receptive_field_rejects_a_global_pooling(model):
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d"):
        zf.receptive_field(model, "classifier.2")


def test_channel_maxima_against_full_activations(model, images):
    maxima = zf.channel_maxima(model, images, ["features.4", "features.12"], batch_size=20)
    with torch.no_grad():
        a4 = model.features[:5](images)
        a12 = model.features[:13](images)
    for name, act in [("features.4", a4), ("features.12", a12)]:
        m = maxima[name]
        assert m.shape == tuple(act.shape[1:])
        assert torch.allclose(m.values, act.amax(dim=(2, 3)))
        n, c = torch.meshgrid(torch.arange(act.shape[0]), torch.arange(act.shape[1]), indexing="ij")
        assert torch.allclose(act[n, c, m.positions[..., 0], m.positions[..., 1]], m.values)


def test_channel_maxima_restores_mode_and_hooks(model, images):
    model.train()
    try:
        zf.channel_maxima(model, images[:4], ["features.1"])
        assert model.training and model.features[1].training
    finally:
        model.eval()
    assert not any(m._forward_hooks for m in model.modules())


def test_top_is_sorted_and_consistent(model, images):
    m = zf.channel_maxima(model, images, ["features.9"])["features.9"]
    top = m.top(5, k=9)
    assert top.indices.shape == (9,) and torch.all(top.values[:-1] >= top.values[1:])
    assert torch.equal(top.values, m.values[:, 5].sort(descending=True).values[:9])
    assert torch.equal(top.positions, m.positions[top.indices, 5])
    with pytest.raises(IndexError, match="channel"):
        m.top(64)


def test_project_top_stays_in_receptive_field_and_rules_differ(model, images):
    maxima = zf.channel_maxima(model, images, RELUS)
    differences = {}
    for layer in RELUS:
        top, proj = zf.project_top(model, images, layer, 2, k=6, maxima=maxima[layer])
        rf = zf.receptive_field(model, layer)
        for i in range(6):
            outside = ~rf.mask(top.positions[i], (64, 64))
            for signal in proj.values():
                assert torch.count_nonzero(signal[i][:, outside]) == 0
        differences[layer] = (proj["deconvnet"] - proj["guided_backprop"]).abs().max().item()
    # One ReLU on the path (the seed's own, open): the rules agree. More ReLUs: they differ.
    assert differences["features.1"] == 0
    assert all(differences[layer] > 0 for layer in RELUS[1:])


def test_project_top_matches_project(model, images):
    top, proj = zf.project_top(model, images, "features.7", 4, k=3, rules=["deconvnet"])
    position = tuple(top.positions[1].tolist())
    direct = dl.project(model, images[top.indices], "features.7", 4, position=position)
    assert list(proj) == ["deconvnet"] and torch.allclose(proj["deconvnet"][1], direct[1])


def test_top_class_share_closed_form():
    values = torch.tensor([[5.0, 0.0, 1.0], [4.0, 0.0, 2.0], [3.0, 0.0, 3.0], [2.0, 0.0, 4.0]])
    maxima = zf.ChannelMaxima(values, torch.zeros(4, 3, 2, dtype=torch.long), (3, 1, 1))
    labels = torch.tensor([0, 0, 1, 2])
    shares = zf.top_class_share(maxima, labels, k=3)
    # channel 0: images 0, 1, 2 -> classes 0, 0, 1; channel 1 never fires; channel 2: images 3, 2, 1
    assert (
        shares[0].item() == pytest.approx(2 / 3)
        and shares[1].isnan()
        and shares[2].item() == pytest.approx(1 / 3)
    )
