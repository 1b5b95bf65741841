"""The shapes dataset and the sample photos (deconvlab.data)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from deconvlab import data
from deconvlab.data import CLASSES, shapes


def test_shapes_types_and_ranges():
    ds = shapes(24, seed=3)
    assert len(ds) == 24
    assert ds.images.shape == (24, 3, 64, 64) and ds.images.dtype == torch.float32
    assert ds.labels.shape == (24,) and ds.labels.dtype == torch.int64
    assert ds.masks.shape == (24, 64, 64) and ds.masks.dtype == torch.bool
    assert float(ds.images.min()) >= 0.0 and float(ds.images.max()) <= 1.0
    assert ds.classes == CLASSES and len(CLASSES) >= 6
    assert bool(ds.masks.flatten(1).any(1).all()), "every object has pixels"
    image, label = ds[5]
    assert image.shape == (3, 64, 64) and int(label) == int(ds.labels[5])


def test_shapes_is_deterministic_and_prefix_stable():
    a, b = shapes(12, seed=7), shapes(12, seed=7)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.masks, b.masks)
    prefix = shapes(5, seed=7)
    assert torch.equal(prefix.images, a.images[:5]) and torch.equal(prefix.masks, a.masks[:5])
    chunk = shapes(4, seed=7, offset=5)
    assert torch.equal(chunk.images, a.images[5:9])
    assert not torch.equal(shapes(5, seed=8).images, prefix.images)


def test_every_class_appears_with_balanced_frequency():
    counts = torch.bincount(shapes(600, seed=11).labels, minlength=len(CLASSES))
    assert counts.min() >= 60, counts


def test_masks_are_exactly_the_object_pixels_on_a_plain_background():
    ds = shapes(40, seed=2, clutter=0.0)
    for img, mask in zip(ds.images, ds.masks):
        background = img[:, 0, 0].view(3, 1, 1)  # corners are never covered by the object
        differs = (img - background).abs().amax(0) > 1e-4
        assert torch.equal(differs, mask)


def test_clutter_adds_distractors_outside_the_mask():
    def background_std(ds):  # spatial spread of each image's background, averaged
        out = ~ds.masks
        return np.mean([float(img[:, m].std(1).mean()) for img, m in zip(ds.images, out)])

    plain, busy = shapes(20, seed=4, clutter=0.0), shapes(20, seed=4, clutter=1.0)
    assert background_std(plain) < 1e-6
    assert background_std(busy) > 0.05


def test_colour_does_not_give_the_class_away():
    ds = shapes(600, seed=5)
    m = ds.masks.unsqueeze(1).float()
    colour = (ds.images * m).sum((2, 3)) / m.sum((2, 3))  # mean colour of each object
    per_class = torch.stack([colour[ds.labels == k].mean(0) for k in range(len(CLASSES))])
    assert (per_class - per_class.mean(0)).abs().max() < 0.08


def test_two_objects_have_different_classes_and_disjoint_masks():
    ds = shapes(50, seed=9, objects=2)
    assert ds.labels.shape == (50, 2) and ds.masks.shape == (50, 2, 64, 64)
    assert bool((ds.labels[:, 0] != ds.labels[:, 1]).all())
    assert not bool((ds.masks[:, 0] & ds.masks[:, 1]).any())
    assert bool(ds.masks.flatten(2).any(2).all())


def test_forced_label_and_shape_sample():
    ds = shapes(10, seed=1, label="star")
    assert bool((ds.labels == CLASSES.index("star")).all())
    one = data.shape_sample("ring", seed=3)
    assert one.images.shape == (1, 3, 64, 64) and CLASSES[int(one.labels[0])] == "ring"
    with pytest.raises(ValueError, match="unknown shape class 'hexagon'"):
        data.shape_sample("hexagon")


def test_other_sizes_scale_the_drawing():
    ds = shapes(3, seed=0, size=32)
    assert ds.images.shape == (3, 3, 32, 32) and bool(ds.masks.flatten(1).any(1).all())


@pytest.mark.parametrize("kwargs", [{"objects": 3}, {"n": -1}, {"seed": -2}, {"size": 8}, {"label": 17}])
def test_bad_arguments_are_refused(kwargs):
    args = {"n": 2, **kwargs}
    with pytest.raises(ValueError):
        shapes(**args)


def test_generation_is_fast():
    """Issue 3 asks for >= 1000 images/s on 2 cores (benchmark in the README); this only
    catches gross regressions, as the test machine may be busy."""
    shapes(50, seed=0)
    t = time.perf_counter()
    shapes(500, seed=1)
    assert 500 / (time.perf_counter() - t) > 200


def test_sample_images_are_preprocessed_for_imagenet():
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    s = data.sample_images()
    assert s.names == ("chelsea", "coffee", "rocket", "astronaut", "grace_hopper")
    assert s.images.shape == (5, 3, 224, 224) and s.images.dtype == torch.float32
    for raw in s.raw:
        assert raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3
    shown = data.denormalize(s.images)
    assert float(shown.min()) >= 0 and float(shown.max()) <= 1 and float(shown.std()) > 0.1
    for name, expected in s.expected.items():
        for index, label in expected.items():
            assert _IMAGENET_CATEGORIES[index] == label, (name, index)
    assert set(s.expected["chelsea"]) == {281, 282, 285}


def test_sample_image_sizes_and_errors():
    x = data.sample_image("coffee", size=64, normalize=False)
    assert x.shape == (1, 3, 64, 64) and float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(ValueError, match="unknown sample photo 'dog'"):
        data.sample_image("dog")
    with pytest.raises(ValueError, match="unknown sample photo"):
        data.sample_images(names=["chelsea", "dog"])
