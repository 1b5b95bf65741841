"""deconvlab.sanity's experiments against closed forms and independent computations (metrics: test_metrics.py)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deconvlab as dl
from deconvlab import attribute, metrics, sanity
from deconvlab.models import TeachingCNN
from deconvlab.rules import BUILTIN_NAMES as RULES
from deconvlab.sanity._maps import rule_maps
from deconvlab.sanity.class_sensitivity import _energy_on_objects


def small_cnn(seed: int = 0, classes: int = 4) -> nn.Module:
    """Conv-ReLU-MaxPool-Conv-ReLU-GAP-Linear on 3x16x16: every rule's code path, fast."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, classes),
    ).eval()


def images(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- class sensitivity -----------------------------------------------------------------------


def test_energy_on_objects_is_the_share_of_sum_of_squares():
    maps = torch.zeros(1, 2, 3, 4, 4)
    maps[0, 0, 1, 0, 0] = -2.0  # target A: all energy on object A's pixel
    maps[0, 1, 0, 3, 3] = 3.0  # target B: 9 on object B's pixel...
    maps[0, 1, 1, 2, 2] = -4.0  # ...16 on object A's (|s| would give 3/7 and 4/7)
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, 0, 0] = masks[0, 0, 2, 2] = masks[0, 1, 3, 3] = True
    e = _energy_on_objects(maps, masks)
    np.testing.assert_allclose(e[0], [[1.0, 0.0], [16 / 25, 9 / 25]], rtol=1e-6)


def _two_class_model(sign: float) -> nn.Module:
    """Class 1's weights are ``sign`` times class 0's: maps for the two classes are proportional."""
    model = small_cnn(3, classes=2)
    with torch.no_grad():
        model[-1].weight[1] = sign * model[-1].weight[0]
        model[-1].bias.zero_()
    return model


def test_class_sensitivity_proportional_classes():
    x = images(3)
    labels = torch.tensor([[0, 1]] * 3)
    masks = torch.zeros(3, 2, 16, 16, dtype=torch.bool)
    masks[:, 0, :8], masks[:, 1, 8:] = True, True
    same = sanity.class_sensitivity(_two_class_model(2.0), x, labels, masks)
    for rule in RULES:  # a positive multiple of the seed scales every rule's map
        np.testing.assert_allclose(same.spearman[rule], 1.0, atol=1e-9)
        np.testing.assert_allclose(same.spearman_signed[rule], 1.0, atol=1e-9)
        np.testing.assert_allclose(same.maps[rule][:, 1], 2 * same.maps[rule][:, 0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(same.selectivity(rule), 0.5, atol=1e-6)  # both targets alike
        for t, o in ((0, 0), (0, 1), (1, 1)):  # the one definition of energy on an object
            expected = metrics.mask_energy_fraction(same.maps[rule][:, t], masks[:, o]).numpy()
            np.testing.assert_allclose(same.energy[rule][:, t, o], expected)
    flipped = sanity.class_sensitivity(_two_class_model(-1.0), x, labels, masks)
    # the gradient is linear in the seed: map B = -map A, same |map|, opposite sign
    np.testing.assert_allclose(flipped.spearman["gradient"], 1.0, atol=1e-9)
    np.testing.assert_allclose(flipped.spearman_signed["gradient"], -1.0, atol=1e-9)
    direct = attribute(_two_class_model(-1.0), x, 1, rule="guided_backprop")
    torch.testing.assert_close(flipped.maps["guided_backprop"][:, 1], direct)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        sanity.class_sensitivity(small_cnn(), x, labels[:, 0], masks)


# -- cascading randomisation ------------------------------------------------------------------


def test_randomisation_order_teaching_cnn():
    assert sanity.randomisation_order(TeachingCNN()) == [
        "classifier.2",
        "features.11",
        "features.8",
        "features.6",
        "features.3",
        "features.0",
    ]


def test_reinitialise_follows_he_init():
    conv, lin = nn.Conv2d(64, 128, 3), nn.Linear(256, 100)
    torch.manual_seed(0)
    sanity.reinitialise_(conv)
    sanity.reinitialise_(lin)
    assert float(conv.weight.detach().std()) == pytest.approx(
        (2 / (128 * 9)) ** 0.5, rel=0.05
    )  # fan_out, ReLU gain
    assert float(lin.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert not conv.bias.any() and not lin.bias.any()


def test_cascading_randomisation_leaves_model_and_rng_alone_and_matches_manual_reinit():
    model = small_cnn(4)
    before = copy.deepcopy(model.state_dict())
    x, t = images(3), torch.tensor([0, 1, 2])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    result = sanity.cascading_randomisation(model, x, t, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # caller's random state untouched
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the shipped model is never modified
    assert result.stages == ["original", "7", "3", "0"]
    for rule in RULES:
        torch.testing.assert_close(result.maps[rule][0], attribute(model, x, t, rule=rule))
        np.testing.assert_allclose(result.spearman_abs[rule][0], 1.0)
        np.testing.assert_allclose(result.ssim[rule][0], 1.0)
        assert result.spearman_abs[rule].shape == (4, 3)
    # independent: re-initialise a copy by hand, same order, same seed
    manual = copy.deepcopy(model)
    torch.manual_seed(7)
    for name in ("7", "3", "0"):
        sanity.reinitialise_(manual.get_submodule(name))
    torch.testing.assert_close(result.maps["gradient"][-1], attribute(manual, x, t, rule="gradient"))
    assert set(result.mean()) == set(RULES) and result.mean()["gradient"].shape == (4,)
    with pytest.raises(ValueError, match="unknown layers"):
        sanity.cascading_randomisation(model, x, t, layers=["nope"])


# -- image recovery ---------------------------------------------------------------------------


def test_image_recovery_is_pearson_with_the_image_or_its_edges():
    model, x = small_cnn(6), images(3)
    signed = sanity.image_recovery(model, x, 1)
    edges = sanity.image_recovery(model, x, 1, against="edges")
    centred = (x - x.mean((2, 3), keepdim=True)).numpy()
    for rule in RULES:
        m = attribute(model, x, 1, rule=rule)
        expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(m.numpy(), centred)]
        np.testing.assert_allclose(signed[rule], expected, rtol=1e-5)
        e = m.abs().sum(1).numpy()
        expected = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(e, metrics.edge_map(x))]
        np.testing.assert_allclose(edges[rule], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="against"):
        sanity.image_recovery(model, x, 1, against="nope")


def test_html_table():
    page = sanity.html_table({"gradient": {"a": 0.123, "b": -1.0}, "deconvnet": {"a": 2.0}}, caption="t")
    assert "<caption>t</caption>" in page and "0.12" in page and "-1.00" in page and "<td></td>" in page
    assert "1.2e-05" in sanity.html_table({"x": {"y": 1.23e-5}}, fmt=".1e")


# -- input shift ------------------------------------------------------------------------------


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 2), (1, 0)])
def test_shifted_input_conv_computes_the_original_conv(stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, stride=stride, padding=padding)
    x = torch.rand(2, 3, 11, 11)
    shifted = sanity.ShiftedInputConv2d(conv, -0.7)
    torch.testing.assert_close(shifted(x - 0.7), conv(x), atol=1e-5, rtol=1e-5)
    # Kindermans et al.: the new bias is b - W c, summed over the kernel
    torch.testing.assert_close(shifted.conv.bias, conv.bias + 0.7 * conv.weight.sum((1, 2, 3)))


def test_input_shift_leaves_all_three_maps_unchanged_but_not_input_x_gradient():
    model, x = small_cnn(7), images(4)
    before = copy.deepcopy(model.state_dict())
    t = [0, 1, 2, 3]
    result = sanity.input_shift(model, x, t, shift=-1.0)
    assert result.dtype == torch.float64 and result.output_difference < 1e-12
    reference = attribute(copy.deepcopy(model).double(), x.double(), t, rules=RULES)
    for rule in RULES:
        assert result.map_difference[rule] < 1e-12 and result.changed_fraction[rule] == 0
        torch.testing.assert_close(result.shifted_maps[rule], reference[rule])
    # input x gradient: (x + c) g - x g = c g, so the difference is |c| max|g| / max|x g|
    g = reference["gradient"]
    expected = float(g.abs().max() / (x.double() * g).abs().max())
    assert result.input_x_gradient_difference == pytest.approx(expected, rel=1e-6)
    assert result.input_x_gradient_difference > 0.1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == torch.float32
    single = sanity.input_shift(model, x, t, shift=0.5, dtype=None)
    assert single.dtype == torch.float32 and single.output_difference < 1e-4
    teaching = sanity.shift_compensated(TeachingCNN(), 0.5)
    assert isinstance(teaching.features[0], sanity.ShiftedInputConv2d)


# -- pointing game ----------------------------------------------------------------------------


def test_pointing_game_centre_baseline_and_class_averaged_accuracy():
    x = images(4)
    labels = torch.tensor([0, 0, 0, 1])
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[0, 8, 8] = masks[1, 7, 8] = True  # near the centre (8, 8): hits
    masks[2, 0, 0] = masks[3, 15, 15] = True  # corners: misses
    result = sanity.pointing_game(small_cnn(), x, labels, masks, tolerance=2)
    np.testing.assert_array_equal(result.hits["center"], [True, True, False, False])
    # TorchRay averages the per-class accuracies: class 0 has 2/3, class 1 has 0/1
    assert result.accuracy("center") == pytest.approx((2 / 3 + 0) / 2)
    assert set(result.accuracies()) == {*RULES, "center"}
    two = sanity.pointing_game(
        small_cnn(),
        x[:2],
        torch.tensor([[0, 1], [2, 3]]),
        torch.stack([masks[:2], masks[2:]], 1),
        tolerance=2,
    )
    assert len(two.labels) == 4  # every (image, object) pair is a trial
    np.testing.assert_array_equal(two.labels, [0, 1, 2, 3])


# -- reference tables -------------------------------------------------------------------------


def test_reference_tables_are_the_published_numbers_with_their_source():
    adebayo = sanity.reference_table("adebayo2018")
    assert adebayo.columns[:2] == ["method", "original"]
    assert adebayo.row("gradient")["plus_logits"] == pytest.approx(0.601)
    assert adebayo.row("guided_backprop")["plus_conv1_all"] == pytest.approx(0.444)
    assert "Adebayo" in adebayo.source and "NeurIPS" in adebayo.source
    torchray = sanity.reference_table("torchray_pointing")
    assert torchray.row("center")["voc07_vgg16_all"] == pytest.approx(69.6)
    assert torchray.row("deconvnet")["coco14_resnet50_all"] == pytest.approx(30.0)
    assert "TorchRay" in torchray.source
    page = torchray.to_html(highlight=["center"])
    assert "<table>" in page and "69.6" in page and "font-weight:bold" in page
    with pytest.raises(ValueError, match="unknown reference table"):
        sanity.reference_table("nope")
    with pytest.raises(KeyError, match="no row"):
        adebayo.row("nope")


def test_figures_draw():
    model, x = small_cnn(8), images(2)
    cascade = sanity.cascading_randomisation(model, x, 0)
    fig = sanity.plot_cascade(cascade, reference=sanity.reference_table("adebayo2018"))
    assert len(fig.axes) == 4
    legend = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert legend == ["gradient", "DeConvNet", "guided backprop"]  # each rule's own label
    masks = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    masks[:, 0, :4], masks[:, 1, -4:] = True, True
    cs = sanity.class_sensitivity(model, x, torch.tensor([[0, 1], [2, 3]]), masks)
    fig = sanity.plot_class_sensitivity(cs)
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "gradient",
        "DeConvNet",
        "guided backprop",
    ]


def test_maps_in_chunks_equal_one_call():
    model, x = small_cnn(9), images(5)
    t = torch.tensor([0, 1, 2, 3, 0])
    chunked = rule_maps(model, x, t, RULES, chunk=2)
    whole = attribute(model, x, t, rules=RULES)
    for rule in RULES:
        torch.testing.assert_close(chunked[rule], whole[rule])
    torch.testing.assert_close(
        rule_maps(model, x, 3, RULES, chunk=2)["gradient"], attribute(model, x, 3, rule="gradient")
    )


def test_pointing_default_tolerance_scales_torchrays_15px_on_500px():
    x, labels = images(1, size=16), torch.tensor([0])
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    assert sanity.pointing_game(small_cnn(), x, labels, masks).tolerance == pytest.approx(15 / 500 * 16)


# -- compositions: Grad-CAM, Guided Grad-CAM, SmoothGrad beside the rules ----------------------------

COMPOSED = ("gradient", "guided_backprop", "grad_cam", "guided_grad_cam", "smoothgrad")


def test_rule_maps_computes_the_compositions_with_the_library_functions():
    model, x = small_cnn(10), images(5)
    t = torch.tensor([0, 1, 2, 3, 0])
    assert sanity.last_convolution(model) == "3"
    options = sanity.MethodOptions(samples=3, noise_level=0.2, seed=5)
    maps = rule_maps(model, x, t, COMPOSED, chunk=2, options=options)
    assert list(maps) == list(COMPOSED) and maps["grad_cam"].shape == (5, 1, 16, 16)
    torch.testing.assert_close(maps["gradient"], attribute(model, x, t, rule="gradient"))
    torch.testing.assert_close(maps["grad_cam"], dl.grad_cam(model, x, t, "3"))
    torch.testing.assert_close(maps["guided_grad_cam"], dl.guided_grad_cam(model, x, t, "3"))
    for start in (0, 2, 4):  # each chunk draws its noise from seed + its first image's index
        generator = torch.Generator().manual_seed(5 + start)
        expected = dl.smoothgrad(
            model, x[start : start + 2], t[start : start + 2], samples=3, noise_level=0.2, generator=generator
        )
        torch.testing.assert_close(maps["smoothgrad"][start : start + 2], expected)
    layer = rule_maps(model, x, t, ["grad_cam"], options=sanity.MethodOptions(cam_layer="0"))["grad_cam"]
    torch.testing.assert_close(layer, dl.grad_cam(model, x, t, "0"))
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"no nn.Conv2d.*MethodOptions\(cam_layer"):
        rule_maps(flat, x, t, ["grad_cam"])


def test_class_sensitivity_of_the_compositions_proportional_classes():
    """Class 1's weights twice class 0's: every map for B is twice the map for A (same SmoothGrad noise)."""
    x = images(3)
    labels = torch.tensor([[0, 1]] * 3)
    masks = torch.zeros(3, 2, 16, 16, dtype=torch.bool)
    masks[:, 0, :8], masks[:, 1, 8:] = True, True
    result = sanity.class_sensitivity(
        _two_class_model(2.0), x, labels, masks, rules=COMPOSED, options=sanity.MethodOptions(samples=4)
    )
    for method in COMPOSED:
        torch.testing.assert_close(
            result.maps[method][:, 1], 2 * result.maps[method][:, 0], rtol=1e-4, atol=1e-6
        )
    np.testing.assert_allclose(result.spearman_signed["smoothgrad"], 1.0, atol=1e-9)
    np.testing.assert_allclose(result.selectivity("grad_cam"), 0.5, atol=1e-6)
    part = result.select(["grad_cam", "gradient"])
    assert part.rules == ("grad_cam", "gradient") and set(part.energy) == {"grad_cam", "gradient"}
    assert part.maps["grad_cam"] is result.maps["grad_cam"] and result.rules == COMPOSED
    with pytest.raises(KeyError, match="no maps for"):
        result.select(["deconvnet"])


def test_cascading_randomisation_of_the_compositions_matches_manual_reinit():
    model, x, t = small_cnn(11), images(3), torch.tensor([0, 1, 2])
    options = sanity.MethodOptions(samples=2, seed=9)
    result = sanity.cascading_randomisation(model, x, t, rules=COMPOSED, seed=4, options=options)
    assert result.seed == 4 and result.rules == COMPOSED
    manual = copy.deepcopy(model)
    torch.manual_seed(4)
    sanity.reinitialise_(manual.get_submodule("7"))  # stage 1: the logits
    for stage, net in ((0, model), (1, manual)):
        torch.testing.assert_close(result.maps["grad_cam"][stage], dl.grad_cam(net, x, t, "3"))
        noisy = dl.smoothgrad(net, x, t, samples=2, generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(result.maps["smoothgrad"][stage], noisy)  # the same noise at every stage
    np.testing.assert_allclose(result.spearman_abs["smoothgrad"][0], 1.0)
    part = result.select(["smoothgrad"])
    assert part.rules == ("smoothgrad",) and set(part.ssim) == {"smoothgrad"} and part.seed == 4
    with pytest.raises(KeyError, match="no maps for"):
        result.select(["deconvnet"])


# -- where image recovery comes from: the guided rule from layer k upward -----------------------------


def test_guided_from_layer_places_the_guided_rule_from_k_upward():
    model, x, t = small_cnn(12), images(2), 1
    assert sanity.relu_layers(model) == ["1", "4"]
    rules_of = lambda spec: [row.rule for row in dl.explain_rules(model, x, spec)]  # noqa: E731
    assert rules_of(sanity.guided_from_layer(model, 2)) == ["gradient", "guided_backprop"]
    assert rules_of(sanity.guided_from_layer(model, 2, below=True)) == ["guided_backprop", "gradient"]
    assert sanity.guided_from_layer(model, 2).name == "guided from ReLU 2"
    maps = sanity.guided_from_layer_maps(model, x, t)
    assert list(maps) == [3, 2, 1]
    torch.testing.assert_close(maps[1], attribute(model, x, t, rule="guided_backprop"), rtol=0, atol=0)
    torch.testing.assert_close(maps[3], attribute(model, x, t, rule="gradient"), rtol=0, atol=0)
    with dl.backward_rule({"4": "guided_backprop"}, model=model):  # the same map, spelled by hand
        x_ = x.clone().requires_grad_()
        model(x_)[:, t].sum().backward()
    torch.testing.assert_close(maps[2], x_.grad)
    below = sanity.guided_from_layer_maps(model, x, t, [1, 3], below=True)
    torch.testing.assert_close(below[3], maps[1], rtol=0, atol=0)
    torch.testing.assert_close(below[1], maps[3], rtol=0, atol=0)
    for bad, error in ((0, ValueError), (4, ValueError), ("2", TypeError)):
        with pytest.raises(error, match="k"):
            sanity.guided_from_layer(model, bad)
    functional = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    with pytest.raises(ValueError, match=r"no nn\.ReLU module"):
        sanity.relu_layers(functional)


def test_recovery_by_depth_is_the_image_correlation_of_each_map():
    model, x, t = small_cnn(13), images(5), torch.tensor([0, 1, 2, 3, 0])
    result = sanity.recovery_by_depth(model, x, t, chunk=2)
    assert result.ks == [3, 2, 1] and result.layers == ["1", "4"]
    maps = sanity.guided_from_layer_maps(model, x, t)
    for k in result.ks:
        torch.testing.assert_close(result.upper[k], maps[k])
        np.testing.assert_allclose(
            result.correlation_upper[k], metrics.image_correlation(maps[k], x), rtol=1e-6
        )
    torch.testing.assert_close(result.lower[1], result.upper[3])  # nothing guided below layer 1: the gradient
    assert result.mean("upper")[1] == pytest.approx(float(np.nanmean(result.correlation_upper[1])))
    assert [result.layers_text(k) for k in result.ks] == [
        "none (the gradient)",
        "ReLU 2",
        "all (guided backprop)",
    ]
    assert result.layers_text(2, "lower") == "ReLU 1"
    edges = sanity.recovery_by_depth(model, x, 1, against="edges")
    np.testing.assert_allclose(
        edges.correlation_lower[2], metrics.edge_correlation(edges.lower[2], x), rtol=1e-6
    )
    with pytest.raises(ValueError, match="against"):
        sanity.recovery_by_depth(model, x, t, against="nope")
    with pytest.raises(ValueError, match="part"):
        result.mean("middle")


def test_the_published_table_holds_the_compositions_the_checks_compute():
    adebayo = sanity.reference_table("adebayo2018")
    published = {method: adebayo.row(method)["plus_logits"] for method in sanity.COMPOSITIONS}
    assert published == {"grad_cam": 0.556, "guided_grad_cam": 0.555, "smoothgrad": 0.536}
    assert set(sanity.COMPOSITION_LABELS) == set(sanity.COMPOSITIONS)


def test_selectivity_is_nan_where_a_map_has_no_energy_on_either_object():
    x, labels = images(2), torch.tensor([[0, 1], [0, 1]])
    masks = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    masks[:, 0, :8], masks[:, 1, 8:] = True, True
    result = sanity.class_sensitivity(small_cnn(14), x, labels, masks)
    result.energy["gradient"][0] = 0.0  # image 0: no energy anywhere
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        selectivity = result.selectivity("gradient")
    assert np.isnan(selectivity[0]) and np.isfinite(selectivity[1])
