"""The sanity-check explorers, driven kernel-side: a slider move swaps cached pictures, recomputes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deconvlab import data, sanity
from deconvlab.metrics import abs_normalise, diverging_normalise
from deconvlab.models import TeachingCNN
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


def _column(explorer, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The two pictures of column ``k`` (0: the input), top then bottom (None where empty)."""
    top, bottom = explorer.rows
    return top[k].image, None if bottom[k] is None else bottom[k].image


def test_class_sensitivity_explorer_follows_the_image_slider(two_objects, no_recomputation):
    e = ClassSensitivityExplorer(two_objects, scale=2)
    no_recomputation()
    first = [_column(e, k) for k in range(4)]
    view = e.view.value
    assert "image 0" in e.readout.value
    e.controls["image"].value = 2
    assert e.view.value != view
    for k in range(4):
        assert not np.array_equal(_column(e, k)[0], first[k][0]), k
    # column 1 (gradient): the abs-normalised map for A above the one for B
    norm = abs_normalise(two_objects.maps["gradient"][2])
    np.testing.assert_array_equal(_column(e, 1)[0], norm[0])
    np.testing.assert_array_equal(_column(e, 1)[1], norm[1])
    a, b = (data.CLASSES[int(c)] for c in two_objects.labels[2])
    assert f"A = <b>{a}</b>, B = <b>{b}</b>" in e.readout.value
    assert f"{two_objects.spearman['deconvnet'][2]:+.2f}" in e.readout.value
    assert "<td>DeConvNet</td>" in e.readout.value  # rules named by their own label
    assert e.rows[0][3].title.startswith("guided backprop\n")  # column title: label and equation
    assert e.last_redraw_seconds < 0.05


def test_randomisation_explorer_follows_stage_and_image(cascade, no_recomputation):
    labels = ["trained", "logits", "conv5"]
    e = RandomisationExplorer(cascade, stage_labels=labels, scale=2)
    no_recomputation()
    start = [_column(e, k) for k in range(4)]
    assert "stage 0: <b>trained</b>" in e.readout.value and "re-initialised: nothing" in e.readout.value
    e.controls["stage"].value = 2
    np.testing.assert_array_equal(_column(e, 0)[0], start[0][0])  # same image
    assert _column(e, 0)[1] is None  # no input in the bottom row
    for k in range(1, 4):
        assert not np.array_equal(_column(e, k)[1], start[k][1])
    assert "re-initialised: logits, conv5" in e.readout.value
    value = cascade.ssim["guided_backprop"][2, 0]
    assert f"{value:+.2f}" in e.readout.value
    norm = abs_normalise(cascade.maps["deconvnet"][:, 0])
    np.testing.assert_array_equal(_column(e, 2)[0], norm[0])
    np.testing.assert_array_equal(_column(e, 2)[1], norm[2])
    e.controls["image"].value = 1
    assert not np.array_equal(_column(e, 0)[0], start[0][0])


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
    np.testing.assert_allclose(_column(e, 3)[0], 0.5 + 0.5 * d[0])
    np.testing.assert_allclose(_column(e, 3)[1], 0.5 + 0.5 * d[1])
    assert "grey = 0" in e.legend.value and e.rows[1][3].key.ticklabels == ("−p99", "0", "+p99")
    r.controls["stage"].value = 1
    before = r.readout.value
    r.controls["display"].value = "signed"
    d = diverging_normalise(cascade.maps["gradient"][:, 0])
    np.testing.assert_allclose(_column(r, 1)[1], 0.5 + 0.5 * d[1])
    assert r.readout.value == before  # the numbers do not depend on the display
    with pytest.raises(ValueError, match="display"):
        from deconvlab.widgets.sanity_explorer import display_arrays

        display_arrays(cascade.maps["gradient"][0], "nope")
