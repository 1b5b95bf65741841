"""Signals to pictures (deconvlab.viz)."""

from __future__ import annotations

import io
import time

import matplotlib
import numpy as np
import pytest
import torch

from deconvlab import viz


def _signal(seed=0, c=3, h=16, w=20):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, h, w, generator=g)


def test_signed_image_centres_zero_on_grey_and_keeps_sign():
    s = torch.zeros(3, 4, 4)
    s[0, 0, 0], s[1, 1, 1] = 2.0, -1.0
    img = viz.signed_image(s)
    assert img.shape == (4, 4, 3) and img.dtype == np.float32
    assert img[0, 0, 0] == pytest.approx(1.0) and img[1, 1, 1] == pytest.approx(0.25)
    assert img[3, 3, 2] == pytest.approx(0.5)
    np.testing.assert_allclose(viz.signed_image(torch.zeros(3, 4, 4)), 0.5)


def test_signed_image_batches_of_one_and_other_channel_counts():
    s = _signal()
    np.testing.assert_allclose(viz.signed_image(s[None]), viz.signed_image(s))
    grey = viz.signed_image(_signal(c=64))
    assert grey.shape == (16, 20) and grey.min() >= 0 and grey.max() <= 1
    clipped = viz.signed_image(s, percentile=90)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    with pytest.raises(ValueError, match="batch of 2"):
        viz.signed_image(torch.zeros(2, 3, 4, 4))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("channels", [3, 8])
def test_one_non_finite_value_does_not_blank_the_picture(bad, channels):
    """Non-finite values are drawn as 0 (grey) and left out of the scale; the rest is unchanged."""
    s = _signal(channels, c=channels)
    clean = s.clone()
    clean[0, 2, 3] = 0.0
    s[0, 2, 3] = bad
    with pytest.warns(RuntimeWarning, match="1 of .* not finite"):
        img = viz.signed_image(s)
    np.testing.assert_array_equal(img, viz.signed_image(clean))
    assert np.isfinite(img).all() and img.min() < 0.25 and img.max() > 0.75
    with pytest.warns(RuntimeWarning, match="not finite"):
        heat = viz.heatmap(s, cmap=None)
    np.testing.assert_array_equal(heat, viz.heatmap(clean, cmap=None))
    assert heat.max() == 1.0
    with pytest.warns(RuntimeWarning, match="not finite"):
        over = viz.overlay(torch.rand(3, 16, 20), s)
    assert np.isfinite(over).all()


def test_an_all_nan_signal_is_grey():
    with pytest.warns(RuntimeWarning, match="48 of 48"):
        np.testing.assert_array_equal(viz.signed_image(torch.full((3, 4, 4), float("nan"))), 0.5)


def test_heatmap_is_channel_max_of_magnitude():
    s = _signal(1)
    grey = viz.heatmap(s, cmap=None)
    expected = s.abs().amax(0)
    np.testing.assert_allclose(grey, (expected / expected.max()).numpy(), rtol=1e-6)
    coloured = viz.heatmap(s)
    assert coloured.shape == (16, 20, 3) and 0 <= coloured.min() and coloured.max() <= 1
    assert viz.heatmap(_signal(c=128), cmap=None).shape == (16, 20)


def test_overlay_greys_the_input_and_colours_where_the_map_is_strong():
    image = torch.full((3, 16, 20), 0.3)
    grey = 0.15 + 0.5 * 0.3  # dimmed luminance
    np.testing.assert_allclose(viz.overlay(image, _signal(2), alpha=0.0), grey, rtol=1e-6)
    heat = np.zeros((16, 20), np.float32)
    heat[5, 5] = 1.0
    out = viz.overlay(image, heat, alpha=1.0)
    assert out.shape == (16, 20, 3)
    np.testing.assert_allclose(out[0, 0], grey, rtol=1e-6)  # no map: the greyed input
    np.testing.assert_allclose(out[5, 5], matplotlib.colormaps["inferno"](1.0)[:3], rtol=1e-5)
    assert viz.overlay(image, _signal(5, c=64, h=4, w=5)).shape == (16, 20, 3)  # resized


def test_overlay_is_visible():
    """Most of a typical map shows: far more than the 1.8% of pixels of the old overlay."""
    import deconvlab as dl

    d = dl.data.shapes(4, seed=0)
    maps = dl.attribute(dl.models.teaching_model(), d.images, d.labels, rule="guided_backprop")
    for image, signal in zip(d.images, maps):
        plain, over = viz.as_image(image), viz.overlay(image, signal)
        changed = np.abs(over - plain).max(-1) > 0.1
        assert changed.mean() > 0.5
        heat = viz.saliency(signal, 99)
        grey = 0.15 + 0.5 * (plain @ np.float32([0.299, 0.587, 0.114]))
        coloured = np.abs(over - grey[..., None]).max(-1) > 0.1
        assert coloured[heat > 0.25].mean() > 0.95, "the map shows wherever it is a quarter of its p99"


def test_percentile_clips_and_keys_say_so():
    s = torch.arange(100.0).reshape(1, 10, 10)
    assert viz.saliency(s).max() == 1.0 and viz.saliency(s)[0, 4] == pytest.approx(4 / 99)
    clipped = viz.saliency(s, percentile=50)
    assert clipped[0, 4] == pytest.approx(4 / 49.5) and (clipped == 1.0).sum() == 50
    np.testing.assert_array_equal(viz.heatmap(s, cmap=None, percentile=50), clipped)
    assert viz.signed_image(torch.ones(1, 2, 2) * 4, scale=8.0)[0, 0] == pytest.approx(0.75)
    assert "99th percentile" in viz.signed_key().label and viz.signed_key().ticklabels[-1] == "+p99"
    assert viz.heat_key(95).ticklabels == ("0", "p95") and "95th percentile" in viz.heat_key(95).label
    assert viz.signed_key(100).ticklabels[0] == "−max"


def test_as_image_undoes_imagenet_normalisation():
    from deconvlab.data import denormalize, sample_image

    x = sample_image("coffee", size=32)[0]
    np.testing.assert_allclose(
        viz.as_image(x, imagenet=True), denormalize(x).permute(1, 2, 0).numpy(), atol=1e-6
    )


def test_outline_halo_is_black_just_outside():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = viz.outline_mask(torch.ones(3, 20, 20), mask, halo=True)
    assert out[5, 5].tolist() == [0, 1, 0] and out[4, 5].tolist() == [0, 0, 0]
    assert out[3, 5].tolist() == [1, 1, 1] and out[10, 10].tolist() == [1, 1, 1]


def test_outline_mask_marks_the_contour_only():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    out = viz.outline_mask(torch.zeros(3, 20, 20), mask, color=(1, 0, 0))
    assert out[5, 5].tolist() == [1, 0, 0] and out[10, 14].tolist() == [1, 0, 0]
    assert out[0, 0].tolist() == [0, 0, 0] and out[10, 10].tolist() == [0, 0, 0]
    out = viz.outline_mask(torch.zeros(3, 20, 20), mask, color=(1, 0, 0), mode="outer")
    assert out[4, 5].tolist() == [1, 0, 0] and out[10, 15].tolist() == [1, 0, 0]
    assert out[5, 5].tolist() == [0, 0, 0], "the object's own pixels stay intact"


def test_png_bytes_is_a_scaled_png_and_fast():
    from PIL import Image

    img = viz.signed_image(_signal(3, h=64, w=64))
    data = viz.png_bytes(img, scale=4)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(data)).size == (256, 256)
    assert Image.open(io.BytesIO(viz.png_bytes(img[..., 0]))).mode == "L"
    t = time.perf_counter()
    for _ in range(10):
        viz.png_bytes(viz.heatmap(_signal(4, h=64, w=64)), scale=4)
    assert (time.perf_counter() - t) / 10 < 0.05  # slider budget: 50 ms per redraw


def test_figure_grid_rules_by_images():
    images = torch.rand(2, 3, 16, 16)
    maps = {r: torch.randn(2, 3, 16, 16) for r in ("gradient", "deconvnet", "guided_backprop")}
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    for kind in ("signed", "heatmap", "overlay", lambda s: viz.heatmap(s, cmap=None)):
        fig = viz.figure_grid(images, maps, titles=["star", "ring"], kind=kind, masks=masks)
        panels = [ax for ax in fig.axes if ax.get_label() == "panel"]
        keys = [ax for ax in fig.axes if ax.get_label() == "key"]
        assert len(panels) == 2 * 4 and len(keys) == (0 if callable(kind) else 2 * 3)
        texts = [t.get_text() for t in fig.texts]
        assert texts.count("gradient") == 2 and texts.count("guided backprop") == 2
        assert texts.count("star") == 4 and texts.count("ring") == 4
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown kind"):
        viz.figure_grid(images, maps, kind="nope")


def test_figure_grid_outlines_the_inputs_only():
    images = torch.rand(1, 3, 16, 16)
    maps = {"gradient": torch.randn(1, 3, 16, 16)}
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[:, 4:8, 4:8] = True
    with_mask = viz.figure_grid(images, maps, masks=masks)
    without = viz.figure_grid(images, maps)
    arrays = [
        [ax.images[0].get_array() for ax in f.axes if ax.get_label() == "panel"] for f in (with_mask, without)
    ]
    assert not np.array_equal(arrays[0][0], arrays[1][0]), "the input is outlined"
    np.testing.assert_array_equal(arrays[0][1], arrays[1][1])


def test_panel_figure_gives_every_panel_one_size_and_the_canvas_matches_it():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    key = viz.signed_key()
    rng = np.random.default_rng(0)
    rows = [
        [
            viz.Panel(rng.random((16, 16, 3)), "input"),
            viz.Panel(rng.random((8, 8)), "a long title\nx", key),
        ],
        [None, viz.Panel(rng.random((32, 32)), "", key)],
    ]
    fig = viz.panel_figure(rows, 64, title="state", row_labels=["one", "two"])
    FigureCanvasAgg(fig).draw()
    sizes = {tuple(np.round(ax.get_window_extent().size)) for ax in fig.axes if ax.get_label() == "panel"}
    assert sizes == {(64.0, 64.0)}
    canvas = viz.PanelCanvas(rows, 64, row_labels=["one", "two"])
    picture = canvas.render(rows)
    assert picture.shape == (canvas.height, canvas.width, 3)
    top, left, h, w = canvas.boxes[1][1]
    assert (h, w) == (64, 64)
    expected = (np.clip(rows[1][1].image, 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(picture[top : top + h : 2, left : left + w : 2, 0], expected)
    assert canvas.png(rows)[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="rows"):
        viz.panel_figure("nope")


def test_long_text_is_wrapped_to_its_panel():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    label = "a colour key whose label is far too long for one line under a narrow panel"
    key = viz.ColourKey("gray", 0, 1, (0, 1), ("0", "1"), label)
    fig = viz.panel_figure([[viz.Panel(np.zeros((8, 8)), "title " * 8, key)] * 3], 96)
    renderer = FigureCanvasAgg(fig).get_renderer()
    for text in fig.texts:
        assert text.get_window_extent(renderer).width <= 96 + 1, text.get_text()


def test_figure_shows_itself_in_ipython_without_pyplot():
    from IPython.core.formatters import DisplayFormatter

    fig = viz.figure_grid(torch.rand(1, 3, 8, 8), {"gradient": torch.randn(1, 3, 8, 8)})
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"][:4] == b"\x89PNG"
