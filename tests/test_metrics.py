"""deconvlab.metrics against closed forms, the papers' formulas and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from deconvlab import metrics


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- display normalisations --------------------------------------------------------------------


def test_abs_normalise_matches_pair_saliency_formula():
    m = _randn(2, 3, 8, 8, seed=1)
    out = metrics.abs_normalise(m)
    for i in range(2):
        a = m[i].abs().sum(0).numpy()
        lo, hi = a.min(), np.percentile(a, 99)
        np.testing.assert_allclose(out[i], np.clip((a - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)
    assert out.shape == (2, 8, 8) and out.min() >= 0 and out.max() == 1
    np.testing.assert_allclose(metrics.abs_normalise(-3 * m), out, atol=1e-6)  # |.| and scale-free
    np.testing.assert_allclose(metrics.abs_normalise(m.numpy()), out)  # arrays too
    assert not metrics.abs_normalise(torch.zeros(3, 4, 4)).any()  # a zero map stays zero


def test_diverging_normalise_keeps_sign_and_is_scale_free():
    m = _randn(3, 8, 8, seed=2)
    out = metrics.diverging_normalise(m)
    s = m.sum(0).numpy()
    np.testing.assert_allclose(out, np.clip(s / np.percentile(np.abs(s), 99), -1, 1), rtol=1e-5)
    np.testing.assert_allclose(metrics.diverging_normalise(-2 * m), -out, atol=1e-6)


# -- similarity of two maps --------------------------------------------------------------------


def test_spearman_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.random((3, 5, 5))
    np.testing.assert_allclose(metrics.spearman(a, a**3 + 1), 1.0)  # any increasing function
    np.testing.assert_allclose(metrics.spearman(a, -a), -1.0)
    b = rng.random((3, 5, 5))
    ranks = lambda v: np.argsort(np.argsort(v.reshape(len(v), -1), axis=1), axis=1)  # noqa: E731
    expected = [np.corrcoef(u, w)[0, 1] for u, w in zip(ranks(a), ranks(b))]  # no ties: Pearson of ranks
    np.testing.assert_allclose(metrics.spearman(a, b), expected, atol=1e-12)
    assert np.isnan(metrics.spearman(np.zeros((1, 4, 4)), a[:1, :4, :4]))[0]  # constant map: no ranking
    with pytest.raises(ValueError, match="different shapes"):
        metrics.spearman(a, b[:, :4])


def test_pearson_is_the_correlation_coefficient_of_each_flattened_pair():
    rng = np.random.default_rng(1)
    a, b = rng.random((4, 3, 5, 5)), rng.random((4, 3, 5, 5))
    expected = [np.corrcoef(u.ravel(), v.ravel())[0, 1] for u, v in zip(a, b)]
    np.testing.assert_allclose(metrics.pearson(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(metrics.pearson(a, 2 * a - 1), 1.0)  # any increasing affine map
    out = metrics.pearson(np.ones((2, 3, 3)), a[:2, 0, :3, :3])
    assert np.isnan(out).all()
    with pytest.raises(ValueError, match="different shapes"):
        metrics.pearson(a, b[:3])


def _ssim_by_formula(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (IEEE TIP 2004) with a 7x7 uniform window, sample covariances, borders cropped."""
    c1, c2, n = 0.01**2, 0.03**2, 49
    mean = lambda v: ndimage.uniform_filter(v, size=7)  # noqa: E731
    mx, my = mean(x), mean(y)
    vx = (mean(x * x) - mx**2) * n / (n - 1)
    vy = (mean(y * y) - my**2) * n / (n - 1)
    cxy = (mean(x * y) - mx * my) * n / (n - 1)
    s = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s[3:-3, 3:-3].mean())


def test_ssim_follows_wang_et_al():
    rng = np.random.default_rng(2)
    a = rng.random((2, 16, 16))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0)
    np.testing.assert_allclose(metrics.ssim(a, b), [_ssim_by_formula(u, v) for u, v in zip(a, b)], rtol=1e-6)
    assert (metrics.ssim(a, b) < 0.9).all()


def test_relative_difference_and_changed_fraction():
    a = torch.tensor([4.0, -2.0, 1.0, 0.0])
    b = torch.tensor([4.0, -1.0, 1.0, 0.001])
    assert metrics.relative_difference(a, b) == pytest.approx(1 / 4)  # max|a - b| / max|a|
    assert metrics.changed_fraction(a, b) == 1 / 4  # 0.001 is not above 1e-3 * 4
    assert metrics.changed_fraction(a, b, tolerance=1e-4) == 2 / 4
    assert metrics.relative_difference(torch.zeros(3), torch.ones(3)) == 1.0  # zero map: divide by 1


# -- likeness of a map to its image ------------------------------------------------------------


def test_image_correlation_is_one_for_the_centred_image_and_minus_one_for_its_negative():
    x = (
        torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(3))
        + torch.tensor([0.0, 5.0, -2.0])[:, None, None]
    )
    centred = x - x.mean((2, 3), keepdim=True)
    np.testing.assert_allclose(metrics.image_correlation(3 * centred, x), 1.0, rtol=1e-5)
    np.testing.assert_allclose(metrics.image_correlation(-centred, x), -1.0, rtol=1e-5)
    assert (metrics.image_correlation(x, x) < 0.9).all()  # channel means are not part of the image's look


def test_edge_map_of_a_step_is_the_step():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 1.0
    img = torch.cat([img, 1 - img.flip(-1), torch.zeros_like(img)])  # a stack: no smoothing across images
    e = metrics.edge_map(img)[0]
    assert not metrics.edge_map(img)[2].any()
    assert (e[:, 3:5] > 0).all() and not e[:, :3].any() and not e[:, 5:].any()
    np.testing.assert_allclose(e, np.abs(ndimage.sobel(img[0].mean(0).numpy(), axis=1)))


def test_edge_correlation_is_pearson_of_abs_map_with_the_edges():
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(4))
    edges = torch.from_numpy(metrics.edge_map(x))
    maps = torch.stack([edges, -edges, torch.zeros_like(edges)], 1)  # |.| summed over channels = 2 * edges
    np.testing.assert_allclose(metrics.edge_correlation(maps, x), 1.0, rtol=1e-6)
    m = _randn(2, 3, 10, 10, seed=5)
    expected = [
        np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(m.abs().sum(1).numpy(), edges.numpy())
    ]
    np.testing.assert_allclose(metrics.edge_correlation(m, x), expected, rtol=1e-5)


# -- where the energy lies ---------------------------------------------------------------------


def test_pixel_energy_is_the_sum_of_squares_over_channels():
    m = _randn(2, 3, 4, 5, seed=6)
    torch.testing.assert_close(metrics.pixel_energy(m), (m**2).sum(1))
    torch.testing.assert_close(metrics.pixel_energy(m[0]), (m[0] ** 2).sum(0)[None])
    big = metrics.pixel_energy(m, size=(8, 10))  # nearest: every value repeated in a 2x2 block
    torch.testing.assert_close(big, (m**2).sum(1).repeat_interleave(2, 1).repeat_interleave(2, 2))


def test_mask_energy_fraction_closed_form():
    signal = torch.zeros(2, 3, 4, 4)
    signal[0, 0, 0, 0] = 3.0  # energy 9 inside
    signal[0, 1, 3, 3] = -4.0  # energy 16 outside (with |s| it would be 3 / 7)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, 0, 0] = True
    out = metrics.mask_energy_fraction(signal, mask)
    torch.testing.assert_close(out, torch.tensor([9 / 25, 0.0]))  # an all-zero map scores 0
    torch.testing.assert_close(metrics.mask_energy_fraction(signal.numpy(), mask.numpy()), out)  # arrays too
    torch.testing.assert_close(metrics.mask_energy_fraction(signal[0], mask[0]), out[:1])  # one map


def test_mask_energy_fraction_of_a_layer_map_is_enlarged():
    signal = torch.zeros(1, 2, 2, 2)
    signal[0, 0, 0, 0] = 1.0
    signal[0, 1, 1, 1] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :4, :4] = True  # exactly the top-left cell
    torch.testing.assert_close(metrics.mask_energy_fraction(signal, mask), torch.tensor([0.5]))


def test_mask_energy_fraction_of_an_object_blind_map_is_the_area():
    signal = torch.ones(1, 3, 10, 10)
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:5, 1:7] = True
    torch.testing.assert_close(metrics.mask_energy_fraction(signal, mask), torch.tensor([18 / 100]))


def test_energy_concentration_closed_form():
    spike = torch.zeros(1, 3, 10, 10)
    spike[0, 1, 4, 4] = 2.0
    uniform = torch.ones(1, 3, 10, 10)
    out = metrics.energy_concentration(torch.cat([spike, uniform, torch.zeros(1, 3, 10, 10)]), top=0.05)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.05, 0.0]))
    ramp = torch.arange(100.0).sqrt().view(1, 1, 10, 10)  # energies 0..99
    assert metrics.energy_concentration(ramp, top=0.02).item() == pytest.approx((99 + 98) / 4950)


# -- the pointing game -------------------------------------------------------------------------


def test_saliency_points_find_the_channel_max_of_abs():
    m = torch.zeros(2, 3, 16, 16)
    m[0, 1, 3, 12] = 1.0
    m[1, 2, 9, 4] = -5.0  # negative: |.| counts
    m[1, 0, 1, 1] = 2.0
    np.testing.assert_array_equal(metrics.saliency_points(m, smooth=0), [[3, 12], [9, 4]])
    np.testing.assert_array_equal(metrics.saliency_points(m, smooth=0.02), [[3, 12], [9, 4]])


def test_saliency_points_blur_favours_a_cluster_over_a_lone_peak():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 5, 5] = 1.2  # a lone peak...
    m[0, 0, 20:23, 20:23] = 1.0  # ...loses to a 3x3 block once blurred
    np.testing.assert_array_equal(metrics.saliency_points(m, smooth=0), [[5, 5]])
    np.testing.assert_array_equal(metrics.saliency_points(m, smooth=0.05), [[21, 21]])


def test_pointing_hits_use_torchrays_strict_tolerance():
    masks = np.zeros((3, 16, 16), bool)
    masks[:, 8, 8] = True
    points = np.array([[8, 10], [8, 9], [8, 8]])  # distances 2, 1, 0
    np.testing.assert_array_equal(metrics.pointing_hits(points, masks, 2.0), [False, True, True])  # d < tol
    np.testing.assert_array_equal(metrics.pointing_hits(points, masks, 2.01), [True, True, True])
