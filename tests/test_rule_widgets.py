"""The explorers of notebooks 01 and 05, driven from code as a student's slider would."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import deconvlab as dl
from deconvlab import toynets
from deconvlab.metrics import rule_plane
from deconvlab.models import TeachingCNN
from deconvlab.widgets import CustomRuleExplorer, InputExplorer, RuleExplorer
from deconvlab.widgets.rule_explorer import plot_rule_planes

RULES = ["gradient", "deconvnet", "guided_backprop"]


def closed_form(rule: str, x, p):
    """ReLU*(x, p) from the papers' case tables."""
    x, p = np.asarray(x, float), np.asarray(p, float)
    return {
        "gradient": np.where(x > 0, p, 0.0),
        "deconvnet": np.where(p > 0, p, 0.0),
        "guided_backprop": np.where((x > 0) & (p > 0), p, 0.0),
    }[rule]


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def shown(explorer) -> dict:
    """The panels' images of an explorer's one row, by panel title's first line."""
    return {p.title.split("\n")[0]: p.image for p in explorer.rows[0] if p is not None}


# --------------------------------------------------------------------------- RuleExplorer


@pytest.mark.parametrize("rule", RULES)
def test_rule_plane_matches_closed_form(rule):
    plane = rule_plane(rule, extent=2.0, resolution=41)
    axis = np.linspace(-2, 2, 41)
    p, x = np.meshgrid(axis[::-1], axis, indexing="ij")
    np.testing.assert_allclose(plane, closed_form(rule, x, p), atol=1e-6)
    assert plane[20, 20] == 0.0  # (0, 0)
    assert plane[0, 20] == (2.0 if rule == "deconvnet" else 0.0)  # x = 0: the gate is closed


@pytest.mark.parametrize("x, p", [(-0.4, 0.6), (0.5, -0.3), (0.7, 0.2), (0.0, 0.8), (-0.9, -0.9)])
def test_rule_explorer_values_follow_sliders(x, p):
    explorer = RuleExplorer()
    before = {name: picture.copy() for name, picture in explorer.pictures().items()}
    view = explorer.view.value
    explorer.controls["x"].value = x
    explorer.controls["p"].value = p
    values = explorer.values()
    for rule in RULES:
        assert values[rule] == pytest.approx(float(closed_form(rule, x, p)), abs=1e-6)
        assert f"{values[rule]:+.2f}" in explorer.readout.value
    row, column = explorer.marker_pixel()
    grid_row, grid_column = row // explorer.scale, column // explorer.scale
    for rule in RULES:  # the marked cell of each plane holds the value shown in the table
        assert explorer.planes[rule][grid_row, grid_column] == pytest.approx(values[rule], abs=1e-6)
    if (x, p) != (-0.4, 0.6):
        assert all(not np.array_equal(explorer.pictures()[n], before[n]) for n in RULES)
        assert explorer.view.value != view


def test_rule_explorer_marker_is_drawn_where_the_point_is():
    explorer = RuleExplorer(x=0.5, p=-0.5)
    row, column = explorer.marker_pixel()
    scale, half = explorer.scale, (explorer.resolution - 1) // 2
    assert (row, column) == ((half + half // 2) * scale + scale // 2, (half + half // 2) * scale + scale // 2)
    picture = explorer.pictures()["gradient"]
    assert picture.shape == (explorer.resolution * scale,) * 2 + (3,)
    assert (picture[row, column] == 0).all()  # black centre
    assert (picture[row, column + 2 * scale + 1] == 1).all()  # white rim
    explorer.controls["x"].value = -0.5
    moved = explorer.pictures()["gradient"]
    assert not (moved[row, column] == 0).all()


def test_rule_explorer_rejects_even_resolution():
    with pytest.raises(ValueError, match="odd"):
        RuleExplorer(resolution=80)


def test_plot_rule_planes_draws_three_labelled_panels():
    fig = plot_rule_planes(point=(0.3, -0.2))
    panels = [ax for ax in fig.axes if ax.get_label() == "panel"]
    texts = [t.get_text() for t in fig.texts]
    for title in (
        "gradient",
        "p · [x > 0]",
        "DeConvNet",
        "p · [p > 0]",
        "guided backprop",
        "p · [x > 0] · [p > 0]",
    ):
        assert title in texts
    assert len(panels) == 3 and sum(ax.get_label() == "key" for ax in fig.axes) == 3
    assert all(ax.get_xlabel().startswith("x") and ax.get_ylabel().startswith("p") for ax in panels)
    assert plot_rule_planes is dl.viz.plot_rule_planes


# --------------------------------------------------------------------------- InputExplorer


@pytest.fixture(scope="module")
def images():
    return dl.data.shapes(4, seed=3).images


@pytest.fixture(scope="module")
def random_teaching_cnn():
    torch.manual_seed(0)
    return TeachingCNN().eval()


def test_input_explorer_no_pool_deconvnet_picture_never_changes(images, random_teaching_cnn):
    models = {"no max-pooling": toynets.no_pool_network(), "max-pooling": random_teaching_cnn}
    explorer = InputExplorer(models, images, 2)
    first = shown(explorer)
    assert list(first) == ["input", "gradient", "DeConvNet", "guided backprop"]
    explorer.controls["image"].value = 2
    np.testing.assert_array_equal(shown(explorer)["DeConvNet"], first["DeConvNet"])
    for key in ("input", "gradient", "guided backprop"):
        assert not np.array_equal(shown(explorer)[key], first[key])
    diffs = explorer.difference_from_first()
    assert diffs["deconvnet"] == 0.0 and diffs["gradient"] > 0 and diffs["guided_backprop"] > 0
    assert "identical" in explorer.readout.value
    explorer.controls["model"].value = "max-pooling"
    assert explorer.difference_from_first()["deconvnet"] > 0
    assert not np.array_equal(shown(explorer)["DeConvNet"], first["DeConvNet"])


def test_input_explorer_maps_are_attribute_maps(images):
    net = toynets.no_pool_network(seed=5)
    explorer = InputExplorer(net, images, 1)
    assert "model" not in explorer.controls
    reference = dl.attribute(net, images[3:4], 1, rule="guided_backprop")
    torch.testing.assert_close(explorer.maps["model"]["guided_backprop"][3:4], reference)
    named = InputExplorer({"no pool": net}, images, 1)  # one named model: no selector, its maps
    assert "model" not in named.controls and named.summary().startswith("no pool,")
    torch.testing.assert_close(named.maps["no pool"]["guided_backprop"][3:4], reference)


# --------------------------------------------------------------------------- CustomRuleExplorer


def thresholded_guided(x, p, t):
    return p * (x > t) * (p > 0)


def test_custom_rule_explorer_threshold_zero_is_guided_backprop(images, random_teaching_cnn):
    explorer = CustomRuleExplorer(random_teaching_cnn, images[:1], 0, thresholded_guided, value=0.0)
    assert torch.equal(explorer.signal, explorer.builtin_maps["guided_backprop"])
    assert explorer.difference_from_builtins()["guided_backprop"] == 0.0
    assert dl.active_rule() is None


def test_custom_rule_explorer_recomputes_only_the_backward_pass(images, random_teaching_cnn):
    calls = []
    threads = torch.get_num_threads()
    handle = random_teaching_cnn.register_forward_hook(lambda *args: calls.append(1))
    try:
        explorer = CustomRuleExplorer(random_teaching_cnn, images[:1], 3, thresholded_guided)
        forwards = len(calls)
        before = explorer.view.value
        explorer.controls["t"].value = 0.3
        assert len(calls) == forwards
    finally:
        handle.remove()
    assert torch.get_num_threads() == threads  # the one-thread backward pass restores the setting
    assert explorer.view.value != before
    # independent check: a registered rule with t fixed, through a fresh forward pass
    dl.register_rule("test_threshold_03", lambda x, p: thresholded_guided(x, p, 0.3))
    reference = dl.attribute(random_teaching_cnn, images[:1], 3, rule="test_threshold_03")
    torch.testing.assert_close(explorer.signal, reference, rtol=0, atol=1e-7)


def test_custom_rule_explorer_large_threshold_closes_every_gate(images, random_teaching_cnn):
    x = images[1:2]
    top = max(float(v.max()) for v in toynets.relu_inputs(random_teaching_cnn, x).values())
    explorer = CustomRuleExplorer(random_teaching_cnn, x, 1, thresholded_guided, bounds=(0, top + 1, 0.05))
    explorer.controls["t"].value = top + 0.05
    assert not explorer.signal.any()
    assert f"0 of {x.numel()} entries nonzero" in explorer.readout.value


def test_custom_rule_explorer_gradient_family_matches_plain_autograd(images, random_teaching_cnn):
    x = images[2:3]
    explorer = CustomRuleExplorer(random_teaching_cnn, x, 4, lambda x, p, t: p * (x > 0))
    leaf = x.clone().requires_grad_()
    (plain,) = torch.autograd.grad(random_teaching_cnn(leaf)[0, 4], leaf)
    torch.testing.assert_close(explorer.signal, plain)


def test_custom_rule_explorer_needs_one_input(images, random_teaching_cnn):
    with pytest.raises(ValueError, match="one input"):
        CustomRuleExplorer(random_teaching_cnn, images, 0, thresholded_guided)
