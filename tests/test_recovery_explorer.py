"""RecoveryExplorer, driven kernel-side: the guided rule from ReLU layer k upward, a slider move recomputes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deconvlab import data, sanity
from deconvlab.models import TeachingCNN
from deconvlab.sanity import guided_depth
from deconvlab.viz import signed_image
from deconvlab.widgets import RecoveryExplorer


@pytest.fixture(scope="module")
def results():
    d = data.shapes(3, seed=7)
    torch.manual_seed(0)
    untrained = TeachingCNN().eval()
    return {
        "net A": sanity.recovery_by_depth(untrained, d.images, d.labels),
        "net B": sanity.recovery_by_depth(TeachingCNN().eval(), d.images, d.labels),
    }


def test_the_k_slider_shows_the_map_guided_from_k_up_and_its_complement(results, monkeypatch):
    e = RecoveryExplorer(results, scale=2)

    def forbidden(*args, **kwargs):
        raise AssertionError("a slider move recomputed a map")

    monkeypatch.setattr(guided_depth, "attribute", forbidden)
    assert e.controls["k"].value == 6 and e.controls["k"].min == 1
    first = e.view.value
    e.controls["k"].value = 2
    assert e.view.value != first and e.last_redraw_seconds < 5
    _, upper, lower = e.rows[0]
    r = results["net A"]
    np.testing.assert_array_equal(upper.image, _signed(r.upper[2][0]))
    np.testing.assert_array_equal(lower.image, _signed(r.lower[2][0]))
    assert "guided from ReLU k up" in upper.title and "guided below ReLU k" in lower.title
    assert e.summary() == "net A, image 0, k = 2"
    assert "<tr style='font-weight:bold'><td>2</td><td>ReLU 2-5</td>" in e.readout.value
    e.controls["image"].value = 2
    np.testing.assert_array_equal(e.rows[0][1].image, _signed(r.upper[2][2]))
    e.controls["model"].value = "net B"
    np.testing.assert_array_equal(e.rows[0][1].image, _signed(results["net B"].upper[2][2]))
    assert f"{results['net B'].mean('upper')[2]:+.2f}" in e.readout.value
    assert e.static_png().startswith(b"\x89PNG")


def _signed(signal) -> np.ndarray:
    """How ``viz.map_panels`` shows a map by default (signed, clipped at the 99th percentile)."""
    from deconvlab.viz import PERCENTILE

    return signed_image(signal, PERCENTILE)


def test_one_result_has_no_model_selector_and_bad_arguments_are_named(results):
    e = RecoveryExplorer(results["net A"])
    assert set(e.controls) == {"k", "image"} and e.model_name == "model"
    named = RecoveryExplorer({"net A": results["net A"]})  # one named result: no selector, its name
    assert set(named.controls) == {"k", "image"} and named.summary().startswith("net A,")
    with pytest.raises(TypeError, match=r"results\['model'\] must be a GuidedDepthResult"):
        RecoveryExplorer("maps")
    with pytest.raises(ValueError, match="empty"):
        RecoveryExplorer({})
    shallow = sanity.GuidedDepthResult(
        results["net A"].images, results["net A"].targets, ["a"], {}, {}, {}, {}
    )
    with pytest.raises(ValueError, match="different numbers of ReLU layers"):
        RecoveryExplorer({"a": results["net A"], "b": shallow})
    with pytest.raises(ValueError, match="scale"):
        RecoveryExplorer(results["net A"], scale=0)
