"""The sanity-check explorers, driven kernel-side: a slider move swaps cached pictures, recomputes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deconvlab import data, sanity
from deconvlab.metrics import abs_normalise, diverging_normalise
from deconvlab.models import TeachingCNN
from deconvlab.viz import png_bytes
from deconvlab.widgets.sanity_explorer import ClassSensitivityExplorer, RandomisationExplorer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TeachingCNN().eval()


@pytest.fixture(scope="module")
def two_objects(model):
    d = data.shapes(3, seed=5, objects=2)
    return sanity.class_sensitivity(model, d.images, d.labels, d.masks)


@pytest.fixture(scope="module")
def cascade(model):
    d = data.shapes(2, seed=6)
    return sanity.cascading_randomisation(model, d.images, d.labels, layers=["classifier.2", "features.11"])


@pytest.fixture
def no_recomputation(monkeypatch):
    """After construction, any new map computation fails the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a slider move recomputed a map")

    def arm():
        monkeypatch.setattr(sanity._maps, "attribute", forbidden)  # every check computes maps there

    return arm


def _grey_png(a: np.ndarray, scale: int) -> bytes:
    return png_bytes(np.repeat(a[..., None], 3, -1), scale)


def test_class_sensitivity_explorer_follows_the_image_slider(two_objects, no_recomputation):
    e = ClassSensitivityExplorer(two_objects, scale=2)
    no_recomputation()
    first = {k: p.value for k, p in e.pictures.items()}
    assert "image 0" in e.readout.value
    e.controls["image"].value = 2
    for key, picture in e.pictures.items():
        assert picture.value != first[key], key
    # the picture is the abs-normalised map for A above the one for B
    norm = abs_normalise(two_objects.maps["gradient"][2])
    gap = np.ones((2, norm.shape[-1]))
    assert e.pictures["gradient"].value == _grey_png(np.concatenate([norm[0], gap, norm[1]]), 2)
    a, b = (data.CLASSES[int(c)] for c in two_objects.labels[2])
    assert f"A = <b>{a}</b>, B = <b>{b}</b>" in e.readout.value
    assert f"{two_objects.spearman['deconvnet'][2]:+.2f}" in e.readout.value
    assert "<td>DeConvNet</td>" in e.readout.value  # rules named by their own label
    assert "guided backprop" in e.view.children[0].children[3].children[0].value  # column title
    assert e.last_redraw_seconds < 0.05


def test_randomisation_explorer_follows_stage_and_image(cascade, no_recomputation):
    labels = ["trained", "logits", "conv5"]
    e = RandomisationExplorer(cascade, stage_labels=labels, scale=2)
    no_recomputation()
    start = {k: p.value for k, p in e.pictures.items()}
    assert "stage 0: <b>trained</b>" in e.readout.value and "re-initialised: nothing" in e.readout.value
    e.controls["stage"].value = 2
    assert e.pictures["input"].value == start["input"]  # same image
    for rule in cascade.rules:
        assert e.pictures[rule].value != start[rule]
    assert "re-initialised: logits, conv5" in e.readout.value
    value = cascade.ssim["guided_backprop"][2, 0]
    assert f"{value:+.2f}" in e.readout.value
    m = cascade.maps["deconvnet"][:, 0]
    norm = abs_normalise(m)
    gap = np.ones((2, norm.shape[-1]))
    assert e.pictures["deconvnet"].value == _grey_png(np.concatenate([norm[0], gap, norm[2]]), 2)
    e.controls["image"].value = 1
    assert e.pictures["input"].value != start["input"]


def test_randomisation_explorer_callbacks_are_fast(cascade):
    e = RandomisationExplorer(cascade)
    times = []
    for k in range(30):
        e.controls["stage"].value = (k + 1) % len(cascade.stages)
        times.append(e.last_redraw_seconds)
    assert np.median(times) < 0.05


def test_randomisation_explorer_rejects_wrong_labels(cascade):
    with pytest.raises(ValueError, match="stage labels"):
        RandomisationExplorer(cascade, stage_labels=["a"])


def test_display_toggle_shows_signed_maps(two_objects, cascade, no_recomputation):
    e = ClassSensitivityExplorer(two_objects, scale=1)
    r = RandomisationExplorer(cascade, scale=1)
    no_recomputation()
    e.controls["display"].value = "signed"
    d = diverging_normalise(two_objects.maps["guided_backprop"][0])
    gap = np.ones((2, d.shape[-1]))
    assert e.pictures["guided_backprop"].value == _grey_png(
        np.concatenate([0.5 + 0.5 * d[0], gap, 0.5 + 0.5 * d[1]]), 1
    )
    assert "grey = 0" in e.legend.value
    r.controls["stage"].value = 1
    before = r.readout.value
    r.controls["display"].value = "signed"
    d = diverging_normalise(cascade.maps["gradient"][:, 0])
    assert r.pictures["gradient"].value == _grey_png(
        np.concatenate([0.5 + 0.5 * d[0], gap, 0.5 + 0.5 * d[1]]), 1
    )
    assert r.readout.value == before  # the numbers do not depend on the display
    with pytest.raises(ValueError, match="display"):
        from deconvlab.widgets.sanity_explorer import display_arrays

        display_arrays(cascade.maps["gradient"][0], "nope")
