"""The notebook 02 and 03 explorers, driven from code as a student's clicks would drive them."""

import numpy as np
import pytest
import torch
from torch import nn

import deconvlab as dl
from deconvlab.metrics import energy_concentration, mask_energy_fraction
from deconvlab.models import TeachingCNN
from deconvlab.widgets.cnn_explorer import CNNExplorer, relu_layers
from deconvlab.widgets.projection_explorer import ProjectionExplorer
from deconvlab.zeiler_fergus import receptive_field

RULES = ["gradient", "deconvnet", "guided_backprop"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TeachingCNN().eval()


@pytest.fixture(scope="module")
def data():
    return dl.data.shapes(12, seed=5)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# -- statistics -----------------------------------------------------------------------------


def test_mask_energy_fraction_closed_form():
    signal = torch.zeros(2, 3, 4, 4)
    signal[0, 0, 0, 0] = 3.0  # energy 9 inside
    signal[0, 1, 3, 3] = 4.0  # energy 16 outside
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    out = mask_energy_fraction(signal, mask)
    assert torch.allclose(out, torch.tensor([9 / 25, 0.0]))  # an all-zero map scores 0


def test_mask_energy_fraction_of_a_layer_map_is_enlarged():
    signal = torch.zeros(1, 2, 2, 2)
    signal[0, 0, 0, 0] = 1.0
    signal[0, 1, 1, 1] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True  # exactly the top-left cell
    assert torch.allclose(mask_energy_fraction(signal, mask), torch.tensor([0.5]))


def test_energy_concentration_closed_form():
    spike = torch.zeros(1, 3, 10, 10)
    spike[0, 1, 4, 4] = 2.0
    uniform = torch.ones(1, 3, 10, 10)
    ramp = torch.arange(100.0).sqrt().view(1, 1, 10, 10)  # energies 0..99
    out = energy_concentration(torch.cat([spike, uniform, torch.zeros(1, 3, 10, 10)]), top=0.05)
    assert torch.allclose(out, torch.tensor([1.0, 0.05, 0.0]))
    assert energy_concentration(ramp, top=0.02).item() == pytest.approx((99 + 98) / 4950)


def test_relu_layers(model):
    assert relu_layers(model) == ["features.1", "features.4", "features.7", "features.9", "features.12"]
    assert relu_layers(nn.Linear(2, 2)) == []


# -- notebook 02 explorer -------------------------------------------------------------------


@pytest.fixture()
def explorer(model, data):
    return CNNExplorer(model, data.images, data.labels, data.masks)


def test_first_draw_shows_five_panels(explorer):
    assert _png_size(explorer.view.value)[0] <= dl.viz.MAX_WIDTH
    titles = [panel.title.split("\n")[0] for panel in explorer.rows[0]]
    assert titles == ["input", "gradient", "DeConvNet", "guided backprop", "guided backprop"]
    assert explorer.rows[0][3].highlight and "over the greyed input" in explorer.rows[0][4].title
    assert "true:" in explorer.caption.value and "Energy on the object" in explorer.caption.value
    assert explorer.computed == 1


def test_maps_are_the_one_forward_dict(explorer, model, data):
    maps = explorer.maps()
    target = int(explorer.predictions[0])
    for rule in RULES:
        expected = dl.attribute(model, data.images[:1], target, rule=rule)[0]
        assert torch.allclose(maps[rule], expected, atol=1e-6)


def test_predictions_are_the_models(explorer, model, data):
    with torch.no_grad():
        assert torch.equal(explorer.predictions, model(data.images).argmax(1))


def _with_a_frozen_batchnorm() -> nn.Module:
    """A model in training mode whose BatchNorm is frozen (eval), as when fine-tuning."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 6),
    ).train()
    net[1].eval()
    return net


def test_explorer_restores_each_modules_mode(data):
    net = _with_a_frozen_batchnorm()
    modes = [m.training for m in net.modules()]
    stats = net[1].running_mean.clone()
    CNNExplorer(net, data.images[:3], layers=[])
    assert [m.training for m in net.modules()] == modes
    assert torch.equal(net[1].running_mean, stats), "predictions ran in eval mode"


def test_rule_switch_only_rerenders(explorer):
    before, computed = explorer.view.value, explorer.computed
    explorer.controls["rule"].value = "gradient"
    assert explorer.computed == computed
    assert explorer.view.value != before
    assert explorer.rows[0][1].highlight and explorer.rows[0][4].title.startswith("gradient")
    explorer.controls["rule"].value = "guided_backprop"
    assert explorer.view.value == before  # same state, same picture


def test_image_target_layer_moves_compute_once_each(explorer, model, data):
    explorer.controls["image"].value = 3
    assert explorer.computed == 2
    explorer.controls["target"].value = 4
    assert explorer.target_class() == 4 and explorer.computed == 3
    explorer.controls["layer"].value = "features.9"
    assert explorer.computed == 4
    maps = explorer.maps()
    expected = dl.attribute(model, data.images[3:4], 4, rule="deconvnet", layer="features.9")[0]
    assert maps["deconvnet"].shape == (64, 16, 16)
    assert torch.allclose(maps["deconvnet"], expected, atol=1e-6)
    explorer.controls["layer"].value = "input"  # back to a cached state
    assert explorer.computed == 4
    explorer.controls["target"].value = "predicted"
    assert explorer.target_class() == int(explorer.predictions[3])


def test_predicted_shares_the_cache_with_its_class(explorer):
    explorer.controls["target"].value = int(explorer.predictions[0])
    assert explorer.computed == 1


def test_mask_outline_is_drawn_on_the_input_only(model, data):
    with_mask = CNNExplorer(model, data.images, data.labels, data.masks)
    without = CNNExplorer(model, data.images)
    assert with_mask.view.value != without.view.value
    outlined, plain = with_mask.rows[0], without.rows[0]
    mask = with_mask.masks[0].numpy()
    contour = mask & ~np.roll(mask, 1, 0)
    assert np.all(outlined[0].image[contour] == np.float32([0, 1, 0]))
    for a, b in zip(outlined[1:], plain[1:]):
        np.testing.assert_array_equal(a.image, b.image)  # maps and overlay: no outline
    assert "true:" not in without.caption.value


def test_imagenet_style_model_and_photos():
    """A torchvision architecture (untrained, offline) on two photos, with residual layers."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    photos = dl.data.sample_images(size=64, names=["chelsea", "coffee"])
    explorer = CNNExplorer(net, photos.images, layers=["layer1", "layer4"], targets=[281, 967], imagenet=True)
    assert explorer.scale == 3 and len(explorer.controls["target"].options) == 3
    explorer.controls["target"].value = 967
    explorer.controls["layer"].value = "layer4"
    assert explorer.maps()["gradient"].shape == (512, 2, 2)
    assert explorer.rows[0][1].image.shape == (2, 2, 3)  # the layer's heat map, drawn at panel size
    assert _png_size(explorer.view.value)[0] <= dl.viz.MAX_WIDTH


# -- notebook 03 explorer -------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes64():
    return dl.data.shapes(64, seed=2).images


def test_projection_explorer_first_draw(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64)
    assert explorer.layers == relu_layers(model)
    layer = explorer.controls["layer"].value
    assert layer == "features.9" and explorer.controls["zoom"].value
    assert explorer.controls["channel"].value == explorer.strongest_channel(layer)
    assert explorer.controls["channel"].max == 63
    width, _ = _png_size(explorer.view.value)
    assert width <= dl.viz.MAX_WIDTH and [len(row) for row in explorer.rows] == [9, 9, 9]
    assert "features.9" in explorer.caption.value and explorer.computed == 1
    assert not explorer.controls["layer"].readout and "<b>features.9</b>" in explorer.layer_name.value


def test_projection_explorer_channel_and_layer(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64, k=4, layer="features.1", channel=0, zoom=False)
    explorer.controls["channel"].value = 7
    assert explorer.computed == 2
    top, proj = explorer.projections()
    values = explorer.maxima["features.1"].values[:, 7]
    assert torch.equal(top.values, values.sort(descending=True).values[:4])
    direct = dl.project(model, shapes64[top.indices], "features.1", 7, position="max", rule="guided_backprop")
    assert torch.allclose(proj["guided_backprop"], direct)
    explorer.controls["layer"].value = "features.12"
    assert explorer.controls["channel"].max == 127 and explorer.controls["channel"].value == 7
    assert explorer.computed == 3
    explorer.controls["channel"].value = 100
    explorer.controls["layer"].value = "features.4"  # 32 channels: the slider is clamped
    assert explorer.controls["channel"].value == 31 and explorer.controls["channel"].max == 31
    assert explorer.computed == 5  # no extra draw for the intermediate clamped value
    assert "features.4" in explorer.caption.value and "channel <b>31</b>" in explorer.caption.value
    assert "<b>features.4</b> (layer 2 of 5)" in explorer.layer_name.value
    before = explorer.computed
    explorer.controls["layer"].value = "features.12"
    explorer.controls["channel"].value = 7  # cached
    assert explorer.computed == before + 1


def test_projection_explorer_refuses_an_unknown_first_layer(model, shapes64):
    with pytest.raises(ValueError, match=r"features\.2"):
        ProjectionExplorer(model, shapes64, k=2, layer="features.2")


def test_projections_stay_in_the_boxed_receptive_field(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64, k=5)
    explorer.controls["layer"].value = "features.9"
    top, proj = explorer.projections()
    field = receptive_field(model, "features.9")
    for i in range(5):
        outside = ~field.mask(top.positions[i].tolist(), (64, 64))
        assert all(torch.count_nonzero(p[i][:, outside]) == 0 for p in proj.values())


def test_projection_cache_is_bounded(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64, k=2, cache_size=3)
    for channel in range(6):
        explorer.controls["channel"].value = channel
    assert len(explorer._signals) == 3 and len(explorer._pictures) == 6


@pytest.mark.parametrize("size", [0, -1, 2.5])
def test_projection_cache_size_below_one_is_refused(model, shapes64, size):
    with pytest.raises(ValueError, match=f"cache_size must be an integer >= 1.*got {size}"):
        ProjectionExplorer(model, shapes64, k=2, cache_size=size)


def test_projection_cache_of_one(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64, k=2, cache_size=1, channel=0)
    explorer.controls["channel"].value = 1
    assert len(explorer._signals) == 1 and explorer.computed == 2


def test_zoom_only_rerenders_and_crops_the_receptive_field(model, shapes64):
    explorer = ProjectionExplorer(model, shapes64, k=3, zoom=False)
    explorer.controls["layer"].value = "features.7"
    before, computed = explorer.view.value, explorer.computed
    explorer.controls["zoom"].value = True
    assert explorer.computed == computed and explorer.view.value != before
    assert "zoomed in" in explorer.caption.value
    assert _png_size(explorer.view.value) == _png_size(before)
    top, _ = explorer.projections()
    box = receptive_field(model, "features.7").box(top.positions[0].tolist(), (64, 64))
    picture = explorer.rows[0][0].image
    crop = dl.viz.as_image(shapes64[top.indices[0]])[box[0] : box[1], box[2] : box[3]]
    assert picture.shape == (64, 64, 3)
    np.testing.assert_array_equal(picture[0, 0], crop[0, 0])
    np.testing.assert_array_equal(picture[63, 63], crop[-1, -1])
    explorer.controls["zoom"].value = False
    assert explorer.view.value == before


def test_projection_explorer_needs_layers(shapes64):
    with pytest.raises(ValueError, match="layers"):
        ProjectionExplorer(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), shapes64)
