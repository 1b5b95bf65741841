"""TorchRay's ``torchray.benchmark`` example helpers, offline.

TorchRay's ``get_example_data`` downloads a VGG16 and an image; here the shipped
teaching model (:func:`deconvlab.models.teaching_model`) and one image of the shapes
dataset stand in for them, so the examples run with no network.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["get_example_data", "plot_example"]


def get_example_data() -> tuple[nn.Module, Tensor, int, str]:
    """``(model, x, category_id, class_name)`` like ``torchray.benchmark.get_example_data``.

    Offline: the shipped teaching model and one image of the shapes dataset.
    """
    from ..data import shapes
    from ..models import teaching_model

    model = teaching_model()
    sample = shapes(1, seed=7)
    category_id = int(sample.labels[0])
    return model, sample.images, category_id, sample.classes[category_id]


def plot_example(
    input: Tensor,
    saliency: Tensor,
    method: str,
    category_id: int | list[int],
    show_plot: bool = False,
    save_path: str | None = None,
):
    """Each image beside its saliency map, one row per example (``torchray.benchmark.plot_example``)."""
    import matplotlib.pyplot as plt

    categories = [category_id] if isinstance(category_id, int) else list(category_id)
    batch = len(input)
    figure, axes = plt.subplots(batch, 2, figsize=(6, 3 * batch), squeeze=False)
    for row, (image, heat) in enumerate(zip(input.detach().float().cpu(), saliency.detach().float().cpu())):
        image = (image - image.min()) / (image.max() - image.min() + 1e-12)
        axes[row, 0].imshow(image.permute(1, 2, 0).numpy())
        axes[row, 0].set_title(f"class {categories[row % len(categories)]}")
        axes[row, 1].imshow(heat[0].numpy(), cmap="jet")
        axes[row, 1].set_title(method)
        for axis in axes[row]:
            axis.axis("off")
    if save_path is not None:
        figure.savefig(save_path, bbox_inches="tight")
    if show_plot:
        plt.show()
    return figure
