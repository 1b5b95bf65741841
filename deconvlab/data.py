"""Data for the experiments: a procedural shapes dataset with ground-truth masks, and photos.

Two sources, both offline:

* :func:`shapes` draws coloured geometric shapes (disc, square, triangle, cross, star, ring) on
  cluttered, textured backgrounds. Every image comes with the exact pixels of its object(s), so a
  saliency map can be scored against ground truth (the "pointing game" of Zhang et al., ECCV 2016,
  and the localisation experiments of Simonyan et al., ICLR-W 2014, §4).
* :func:`sample_images` returns the natural photographs that scikit-image and matplotlib already
  install (chelsea, coffee, rocket, astronaut, grace_hopper), preprocessed for ImageNet models, with
  the ImageNet classes one can expect for each.

Drawing is vectorised NumPy on a coordinate grid: every shape is a signed-distance or polar
inequality evaluated on ``(y, x)``. Image ``i`` of ``shapes(n, seed)`` is drawn from its own random
generator seeded by ``(seed, i)``, so the dataset is a deterministic, prefix-stable function of
``seed``: ``shapes(10, s).images[:5]`` equals ``shapes(5, s).images``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .checks import as_bool, as_int, as_real, as_str, check_input

__all__ = [
    "CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PHOTOS",
    "SEED_VARIABLE",
    "SampleImages",
    "ShapesDataset",
    "data_seed",
    "denormalize",
    "sample_image",
    "sample_images",
    "shape_sample",
    "shapes",
]

#: Class names of the shapes dataset, in label order.
CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "star", "ring")

#: ImageNet channel statistics used by every torchvision classifier.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------


@dataclass
class ShapesDataset:
    """Images of shapes with labels and ground-truth masks.

    Attributes
    ----------
    images : torch.Tensor
        ``float32`` tensor ``(N, 3, H, W)`` with values in ``[0, 1]``.
    labels : torch.Tensor
        ``int64`` tensor, ``(N,)`` for one object per image, ``(N, K)`` for ``K`` objects.
    masks : torch.Tensor
        ``bool`` tensor, ``(N, H, W)`` or ``(N, K, H, W)``: the visible pixels of each object.
    classes : tuple of str
        Class names; ``classes[labels[i]]`` names the object in image ``i``.
    seed : int
        The seed the dataset was drawn with.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: tuple[str, ...] = CLASSES
    seed: int = 0
    clutter: float = field(default=1.0, repr=False)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, label)``, so the dataset can feed a :class:`torch.utils.data.DataLoader`."""
        return self.images[i], self.labels[i]


#: The environment variable that overrides every notebook's data seed.
SEED_VARIABLE = "DECONVLAB_SEED"


def data_seed(default: int) -> int:
    """The notebook's data seed: ``$DECONVLAB_SEED`` when set, else ``default``.

    Every claim a notebook asserts must hold for any seed; the tests run each notebook with
    ten of them.
    """
    value = os.environ.get(SEED_VARIABLE, "").strip()
    if not value:
        return as_int("default", default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{SEED_VARIABLE}={value!r} is not an integer seed; unset it or give one, e.g. 3"
        ) from None


def shapes(
    n: int,
    seed: int = 0,
    objects: int = 1,
    size: int = 64,
    clutter: float = 1.0,
    label: int | str | None = None,
    offset: int = 0,
) -> ShapesDataset:
    """Draw ``n`` images of coloured shapes on cluttered, textured backgrounds.

    Each object has a random class, colour, size, position and rotation; the background is a
    random two-colour texture (sums of plane waves plus pixel noise) crossed by thin straight and
    wavy strokes that belong to no class (distractors). Colours are drawn independently of the
    class, so colour says nothing about the label; only the form does.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int, default 0
        Dataset seed. Image ``i`` uses the generator ``numpy.random.default_rng((seed, i))``,
        hence the result is deterministic and prefix-stable.
    objects : int, default 1
        Objects per image (1 or 2). With 2, the two objects have different classes and are
        placed without overlap when possible; ``labels`` is ``(N, 2)`` and ``masks`` ``(N, 2, H, W)``.
        This is the material for class-sensitivity experiments (Adebayo et al. 2018; Nie et al.,
        ICML 2018): does the map for class A light up object B?
    size : int, default 64
        Image height and width in pixels (all geometry scales with it).
    clutter : float, default 1.0
        Amount of background texture and distractor strokes, from 0 (flat background, no
        strokes) to 1 (the standard dataset). Training ramps it up (curriculum).
    label : int or str, optional
        Force the class of the (first) object, e.g. ``label="star"``. The rest of the image is
        drawn as usual.
    offset : int, default 0
        Index of the first image: ``shapes(n, seed, offset=k)`` are images ``k .. k+n-1`` of
        ``shapes(k + n, seed)``, for drawing a large set in chunks.

    Returns
    -------
    ShapesDataset
        ``.images`` (N, 3, H, W) float32 in [0, 1], ``.labels``, ``.masks``, ``.classes``.

    Raises
    ------
    TypeError
        An argument of the wrong kind (a float ``n``, a string ``seed``, a bool ``label``, ...).
    ValueError
        ``n``, ``seed`` or ``offset`` negative; ``objects`` not 1 or 2; ``size`` outside
        16..1024; ``clutter`` outside [0, 1]; an unknown ``label``; more than 2 GiB of images.

    Examples
    --------
    >>> ds = shapes(8, seed=1)
    >>> ds.images.shape, ds.labels.shape, ds.masks.shape
    (torch.Size([8, 3, 64, 64]), torch.Size([8]), torch.Size([8, 64, 64]))
    """
    n = as_int("n", n, minimum=0)
    seed, offset = as_int("seed", seed, minimum=0), as_int("offset", offset, minimum=0)
    objects = as_int("objects", objects, 1, 2)
    size = as_int("size", size, 16, 1024)
    clutter = as_real("clutter", clutter, 0, 1)
    if n * (3 * 4 + objects) * size * size > 2**31:  # float32 RGB images and one bool mask per object
        raise ValueError(
            f"n={n} images of size {size} would take more than 2 GiB; draw them in chunks with offset= "
            "(shapes(n, seed, offset=k) are images k .. k+n-1)"
        )
    forced = None if label is None else _class_index(label)
    images = np.empty((n, 3, size, size), np.float32)
    labels = np.empty((n, objects), np.int64)
    masks = np.empty((n, objects, size, size), bool)
    canvas = _Canvas(size)
    for i in range(n):
        rng = np.random.default_rng((seed, offset + i))
        images[i], labels[i], masks[i] = canvas.draw(rng, objects, float(clutter), forced)
    if objects == 1:
        labels, masks = labels[:, 0], masks[:, 0]
    return ShapesDataset(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        torch.from_numpy(masks),
        CLASSES,
        seed,
        float(clutter),
    )


def shape_sample(name: str, seed: int = 0, size: int = 64) -> ShapesDataset:
    """One standard image whose object is of class ``name`` (e.g. ``"star"``); used by the CLI.

    ``TypeError`` or ``ValueError`` as :func:`shapes` (``name`` is its ``label``, but must be a string).
    """
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a class name such as 'star' ({', '.join(CLASSES)}), got {type(name).__name__}"
        )
    if name not in CLASSES:
        raise ValueError(f"name: unknown shape class {name[:40]!r}; choose from {', '.join(CLASSES)}")
    return shapes(1, seed=seed, size=size, label=name)


def _class_index(label: int | str) -> int:
    if isinstance(label, str):
        if label not in CLASSES:
            raise ValueError(f"label: unknown shape class {label[:40]!r}; choose from {', '.join(CLASSES)}")
        return CLASSES.index(label)
    if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"label must be a class name or index, got {type(label).__name__} {label!r:.40}")
    if not 0 <= int(label) < len(CLASSES):
        raise ValueError(f"label: shape class index {label} out of range 0..{len(CLASSES) - 1}")
    return int(label)


class _Canvas:
    """Draws one image at a time on a fixed coordinate grid (reused across images)."""

    def __init__(self, size: int):
        self.size = size
        self.scale = size / 64.0
        self.c = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
        self.y, self.x = np.meshgrid(self.c, self.c, indexing="ij")

    # -- geometry ------------------------------------------------------------------------------

    def _frame(
        self, cx: float, cy: float, r: float, theta: float, win=(slice(None), slice(None))
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates in an object's frame: centred, rotated by ``theta``, unit radius.

        ``win`` restricts the grid to a window ``(rows, cols)``.
        """
        dx, dy = self.x[win] - cx, self.y[win] - cy
        c, s = np.cos(theta) / r, np.sin(theta) / r
        return dx * c + dy * s, dy * c - dx * s

    def _shape(self, k: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Boolean mask of class ``k`` in its unit frame (circumradius ~1)."""
        name = CLASSES[k]
        if name == "disc":
            return u * u + v * v <= 0.85
        if name == "square":
            return np.maximum(np.abs(u), np.abs(v)) <= 0.75
        if name == "triangle":  # equilateral: intersection of three half-planes, inradius 0.5
            d = np.maximum(v, -0.5 * v + 0.8660254 * u)
            return np.maximum(d, -0.5 * v - 0.8660254 * u) <= 0.5
        if name == "cross":  # plus sign: two bars of half-width 0.27
            au, av = np.abs(u), np.abs(v)
            return ((au <= 0.27) & (av <= 0.95)) | ((av <= 0.27) & (au <= 0.95))
        if name == "star":  # five-pointed star polygon, outer radius 1, inner radius 0.42
            return _star_radius(np.arctan2(v, u)) ** 2 >= u * u + v * v
        if name == "ring":
            rr = u * u + v * v
            return (rr <= 1.0) & (rr >= 0.36)
        raise AssertionError(name)

    # -- layers --------------------------------------------------------------------------------

    def _background(self, rng: np.random.Generator, clutter: float) -> np.ndarray:
        """Two random colours mixed by a texture: three plane waves plus pixel noise."""
        c1, c2 = _random_colours(rng, 2)
        f = rng.uniform(0.05, 0.6, 3) / self.scale  # spatial frequencies (rad/px)
        a = rng.uniform(0, np.pi, 3)  # orientations
        phase = rng.uniform(0, 2 * np.pi, 3)
        # sum_k cos(f_k (x cos a_k + y sin a_k) + phase_k) as one (H,3) @ (3,W) complex product
        wy = np.exp(1j * (np.outer(f * np.sin(a), self.c) + phase[:, None]))
        wx = np.exp(1j * np.outer(f * np.cos(a), self.c))
        t = (wy.T @ wx).real.astype(np.float32)
        t *= clutter * 0.5 / 3.0
        t += 0.5
        img = c1[:, None, None] + (c2 - c1)[:, None, None] * t
        noise = rng.random((3, self.size, self.size), dtype=np.float32)
        noise -= 0.5
        noise *= 0.14 * clutter  # uniform noise, std 0.04 at full clutter
        img += noise
        return img

    def _stroke(self, rng: np.random.Generator) -> tuple[tuple[slice, slice], np.ndarray]:
        """A distractor: a thin straight or wavy stroke (never one of the classes).

        Returns the window ``(rows, cols)`` that holds the stroke and its mask in that window.
        """
        cx, cy = rng.uniform(0, self.size, 2)
        theta = rng.uniform(0, np.pi)
        half_len = rng.uniform(8, 26)
        half_w = rng.uniform(0.5, 1.3)
        wavy = rng.random() < 0.5
        amp, freq, phase = rng.uniform(2, 5), rng.uniform(0.2, 0.5), rng.uniform(0, 6.3)
        reach = (half_len + (amp if wavy else 0.0) + half_w + 1) * self.scale
        win = (self._span(cy, reach), self._span(cx, reach))
        u, v = self._frame(cx, cy, self.scale, theta, win)
        if wavy:
            v = v - amp * np.sin(freq * u + phase)
        return win, (np.abs(u) <= half_len) & (np.abs(v) <= half_w)

    def _span(self, centre: float, reach: float) -> slice:
        return slice(max(0, int(centre - reach)), min(self.size, int(centre + reach) + 1))

    def _place(self, rng: np.random.Generator, objects: int) -> list[tuple[float, float, float]]:
        """Centres and radii of the objects, without overlap when possible."""
        lo, hi = (9.0, 16.0) if objects == 1 else (7.0, 11.5)
        placed: list[tuple[float, float, float]] = []
        for _ in range(objects):
            for _attempt in range(20):
                r = rng.uniform(lo, hi) * self.scale
                cx, cy = rng.uniform(r, self.size - r, 2)
                if all((cx - x) ** 2 + (cy - y) ** 2 > (r + q + 2) ** 2 for x, y, q in placed):
                    break
            placed.append((cx, cy, r))
        return placed

    def draw(
        self, rng: np.random.Generator, objects: int, clutter: float, forced: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw one image; returns ``(image (3,H,W), labels (K,), masks (K,H,W))``."""
        img = self._background(rng, clutter)
        n_strokes = round(clutter * rng.integers(3, 8))
        for _ in range(n_strokes):
            win, m = self._stroke(rng)
            _paint(img, win, m, _random_colours(rng, 1)[0])
        labels = rng.choice(len(CLASSES), size=objects, replace=False)
        if forced is not None:
            if objects > 1 and labels[1] == forced:
                labels[1] = labels[0]
            labels[0] = forced
        masks = np.zeros((objects, self.size, self.size), bool)
        background_mean = img.mean(axis=(1, 2))
        for j, (cx, cy, r) in enumerate(self._place(rng, objects)):
            u, v = self._frame(cx, cy, r, rng.uniform(0, 2 * np.pi))
            m = self._shape(int(labels[j]), u, v)
            colour = _contrasting_colour(rng, background_mean)
            a = rng.uniform(0, 2 * np.pi)  # gentle shading across the object
            shade = 1.0 + 0.12 * (np.cos(a) * u + np.sin(a) * v)[m]
            img[:, m] = np.clip(colour[:, None] * shade, 0, 1)
            masks[:j, m] = False  # a later object occludes an earlier one
            masks[j] = m
        if clutter > 0 and rng.random() < 0.3 * clutter:  # one stroke across the foreground
            win, m = self._stroke(rng)
            _paint(img, win, m, _random_colours(rng, 1)[0])
            masks[(slice(None), win[0], win[1])] &= ~m
        np.clip(img, 0.0, 1.0, out=img)
        return img, labels, masks


def _paint(img: np.ndarray, win: tuple[slice, slice], mask: np.ndarray, colour) -> None:
    """Set the pixels of ``mask`` (defined on window ``win``) to ``colour``."""
    img[(slice(None), win[0], win[1])][:, mask] = colour[:, None]


def _star_radius(phi: np.ndarray, points: int = 5, inner: float = 0.42) -> np.ndarray:
    """Boundary radius of a regular star polygon at polar angle ``phi`` (outer radius 1).

    By symmetry fold ``phi`` into ``[0, pi/points]``, the sector between an outer vertex ``P`` at
    angle 0 and an inner vertex ``Q`` at angle ``pi/points``; the boundary there is the segment
    ``PQ``, whose line is ``n . p = d``, so the ray meets it at ``d / (n . (cos, sin))``.
    """
    half = np.pi / points
    a = np.abs(np.mod(phi, 2 * half) - half)
    a = half - a  # angle measured from the outer vertex
    px, py = 1.0, 0.0
    qx, qy = inner * np.cos(half), inner * np.sin(half)
    nx, ny = qy - py, px - qx  # normal of PQ
    d = nx * px + ny * py
    return d / (nx * np.cos(a) + ny * np.sin(a))


def _random_colours(rng: np.random.Generator, k: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, (k, 3)).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, ref: np.ndarray, min_dist: float = 0.35):
    """A uniformly random colour at least ``min_dist`` (Euclidean, RGB) from ``ref``."""
    for _ in range(30):
        c = _random_colours(rng, 1)[0]
        if np.linalg.norm(c - ref) >= min_dist:
            return c
    return np.where(ref > 0.5, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# photos
# --------------------------------------------------------------------------------------------

#: The photos installed packages carry, with the ImageNet classes a trained model should give
#: (index -> name, from torchvision's category list). The astronaut (Eileen Collins in a flight
#: suit before a flag) has no ImageNet class of its own, so nothing is expected of it.
PHOTOS: dict[str, dict[int, str]] = {
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "coffee": {967: "espresso", 968: "cup"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
    "astronaut": {},
    "grace_hopper": {652: "military uniform"},
}


@dataclass
class SampleImages:
    """Natural photos ready for an ImageNet model.

    Attributes
    ----------
    names : tuple of str
        Photo names, e.g. ``"chelsea"``.
    raw : list of numpy.ndarray
        The original ``uint8`` ``(H, W, 3)`` photos.
    images : torch.Tensor
        ``(N, 3, size, size)`` float32, resized (short side ``size * 256/224``), centre-cropped
        and normalised with the ImageNet mean and std, as torchvision's models expect.
    expected : dict
        ``name -> {imagenet_index: class_name}``: the classes a good model should predict.
    """

    names: tuple[str, ...]
    raw: list[np.ndarray]
    images: torch.Tensor
    expected: dict[str, dict[int, str]]

    def __len__(self) -> int:
        return len(self.names)


def _load_photo(name: str) -> np.ndarray:
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), "rb") as f:
            return np.array(Image.open(f).convert("RGB"))
    import skimage.data

    return np.array(getattr(skimage.data, name)())[..., :3]


def imagenet_transform(size: int = 224, normalize: bool = True):
    """torchvision preprocessing of an HWC uint8 array: resize, centre crop, (normalise).

    The resize keeps torchvision's 256/224 ratio between the short side and the crop.
    """
    from torchvision import transforms as T

    steps = [
        T.ToTensor(),
        T.Resize(round(size * 256 / 224), antialias=True),
        T.CenterCrop(size),
    ]
    if normalize:
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(steps)


def sample_image(name: str, size: int = 224, normalize: bool = True) -> torch.Tensor:
    """One photo as a ``(1, 3, size, size)`` tensor (ImageNet-normalised unless told otherwise).

    ``TypeError`` or ``ValueError`` for a ``name`` not in :data:`PHOTOS`, a ``size`` that is no
    integer from 8 to 1024, a ``normalize`` that is no bool.
    """
    _photo_name("name", name)
    size = as_int("size", size, 8, 1024)
    normalize = as_bool("normalize", normalize)
    return imagenet_transform(size, normalize)(_load_photo(name)).unsqueeze(0)


def _photo_name(argument: str, name: object) -> str:
    name = as_str(argument, name)
    if name not in PHOTOS:
        raise ValueError(f"{argument}: unknown sample photo {name[:40]!r}; choose from {', '.join(PHOTOS)}")
    return name


def sample_images(size: int = 224, names: Sequence[str] | None = None) -> SampleImages:
    """The natural photos that scikit-image and matplotlib install, preprocessed for ImageNet.

    Parameters
    ----------
    size : int, default 224
        Side of the centre crop.
    names : sequence of str, optional
        Subset of :data:`PHOTOS` (default: all of chelsea, coffee, rocket, astronaut,
        grace_hopper).

    Returns
    -------
    SampleImages
        ``.names``, ``.raw`` (uint8 HWC), ``.images`` (normalised tensor), ``.expected``.

    Raises
    ------
    TypeError, ValueError
        ``size`` is no integer from 8 to 1024; ``names`` is no list of names of :data:`PHOTOS`
        (one name is refused: pass ``[name]``).
    """
    size = as_int("size", size, 8, 1024)
    if isinstance(names, str):
        raise TypeError(f"names takes a list of photo names, got {names[:40]!r}; pass names=[{names[:40]!r}]")
    if names is not None and not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of photo names or None, got {type(names).__name__}")
    names = tuple(PHOTOS) if names is None else tuple(names)
    for i, name in enumerate(names):
        _photo_name(f"names[{i}]", name)
    raw = [_load_photo(name) for name in names]
    tf = imagenet_transform(size)
    images = torch.stack([tf(r) for r in raw]) if raw else torch.empty(0, 3, size, size)
    return SampleImages(names, raw, images, {name: dict(PHOTOS[name]) for name in names})


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: ``x * std + mean``, clipped to [0, 1] (for display).

    ``x`` is ``(3, H, W)`` or ``(N, 3, H, W)`` floating point, else ``TypeError`` or ``ValueError``.
    """
    check_input(x)
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected RGB images (3, H, W) or (N, 3, H, W)")
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * std + mean).clamp(0, 1)
