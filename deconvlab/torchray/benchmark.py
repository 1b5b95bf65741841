"""TorchRay's ``torchray.benchmark`` example helpers, offline by default.

TorchRay's :func:`get_example_data` downloads a VGG16 pretrained on ImageNet and a photo
of a dog and a cat. Here, for ``arch="vgg16"`` (the default), the shipped teaching model
(:func:`deconvlab.models.teaching_model`) stands in for that VGG16, and an image of the
shapes dataset with two objects stands in for the photo: its two classes are the two
category ids. Nothing is downloaded. Any other torchvision architecture name gives
torchvision's pretrained model (from the cache, or downloaded unless
``DECONVLAB_OFFLINE=1``) and the scikit-image photo of a cat.
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor, nn

from .utils import get_device, imsc

__all__ = ["get_example_data", "plot_example"]

#: The shapes image that stands in for TorchRay's photo: a star and a cross, both recognised.
EXAMPLE_SEED = 6
#: VGG16's input side (TorchRay's default ``shape``) and the teaching model's.
VGG_SIDE, TEACHING_SIDE = 224, 64


def _stand_in_image(shape: int | tuple[int, int]) -> tuple[Tensor, int, int]:
    """The two-object shapes image at ``shape`` measured in VGG16 pixels (224 -> 64)."""
    from ..data import shapes

    height, width = (shape, shape) if isinstance(shape, int) else shape
    height, width = (max(16, round(side * TEACHING_SIDE / VGG_SIDE)) for side in (height, width))
    sample = shapes(1, seed=EXAMPLE_SEED, objects=2, size=max(height, width))
    top, left = (sample.images.shape[2] - height) // 2, (sample.images.shape[3] - width) // 2
    x = sample.images[:, :, top : top + height, left : left + width].contiguous()
    first, second = (int(label) for label in sample.labels[0])
    return x, first, second


def _cat_photo(shape: int | tuple[int, int]) -> Tensor:
    from torchvision import transforms as T

    from ..data import IMAGENET_MEAN, IMAGENET_STD, _load_photo

    steps = [T.ToTensor(), T.Resize(shape, antialias=True), T.CenterCrop(shape)]
    transform = T.Compose([*steps, T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return transform(_load_photo("chelsea")).unsqueeze(0)


def get_example_data(
    arch: str = "vgg16", shape: int | tuple[int, int] = 224
) -> tuple[nn.Module, Tensor, int, int]:
    """A model in eval mode with frozen parameters, an input image and two category ids.

    Parameters
    ----------
    arch : str, default "vgg16"
        ``"vgg16"``: the teaching model, standing in for TorchRay's VGG16 (offline). Any other
        torchvision model name: that pretrained ImageNet model.
    shape : int or (height, width), default 224
        Size of the image. For the teaching model it is measured in VGG16's pixels: the
        default 224 (VGG16's input side) gives the teaching model's 64.

    Returns
    -------
    (nn.Module, Tensor, int, int)
        The model, a (1, 3, H, W) image and the category ids of two objects in it (for the
        teaching model, the classes of its two shapes; for the cat photo, ImageNet's
        "tabby" 281 and "Egyptian cat" 285). Model and image are on :func:`get_device`.
    """
    if arch == "vgg16":
        from ..models import teaching_model

        model: nn.Module = teaching_model()
        x, category_id_1, category_id_2 = _stand_in_image(shape)
    else:
        from ..models import torchvision_model

        model = torchvision_model(arch).model
        x, category_id_1, category_id_2 = _cat_photo(shape), 281, 285
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    device = get_device()
    return model.to(device), x.to(device), category_id_1, category_id_2


def _category_name(category_id: int) -> str:
    """The teaching model's class names for ids below 6, ImageNet's above."""
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from ..data import CLASSES

    if 0 <= category_id < len(CLASSES):
        return CLASSES[category_id]
    return _IMAGENET_CATEGORIES[category_id] if category_id < len(_IMAGENET_CATEGORIES) else "?"


def plot_example(
    input: Tensor,
    saliency: Tensor,
    method: str,
    category_id: int | list[int],
    show_plot: bool = False,
    save_path: str | None = None,
) -> None:
    """Each image beside its saliency map, one row per example, in the current figure.

    Parameters
    ----------
    input, saliency : Tensor
        (N, C, H, W) images and (N, 1, h, w) maps.
    method : str
        The method's name, for the titles.
    category_id : int or list of int
        The class each map is for (cycled over the rows).
    show_plot : bool, default False
        Call ``plt.show()``.
    save_path : str, optional
        Save the figure there (its folder is created; the format is the file's extension).
    """
    import matplotlib.pyplot as plt

    categories = [category_id] if isinstance(category_id, int) else list(category_id)
    batch = len(input)
    plt.clf()
    for row in range(batch):
        category: Any = categories[row % len(categories)]
        plt.subplot(batch, 2, 1 + 2 * row)
        imsc(input[row])
        plt.title("input image", fontsize=8)
        plt.subplot(batch, 2, 2 + 2 * row)
        imsc(saliency[row], interpolation="none")
        plt.title(f"{method} for category {_category_name(int(category))} ({category})", fontsize=8)
    if save_path:
        os.makedirs(os.path.dirname(os.path.abspath(save_path)), exist_ok=True)
        plt.savefig(save_path, format=os.path.splitext(save_path)[1].strip("."), bbox_inches="tight")
    if show_plot:
        plt.show()
