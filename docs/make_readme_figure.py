"""Draw docs/three_rules.png: four shapes, their ground-truth masks and the three rules' maps.

python docs/make_readme_figure.py
"""

from pathlib import Path

import torch

import deconvlab as dl

RULES = ["gradient", "deconvnet", "guided_backprop"]


def main() -> None:
    model = dl.models.teaching_model()
    names = ["star", "cross", "triangle", "ring"]
    samples = [dl.data.shape_sample(name, seed=3) for name in names]
    images = torch.cat([sample.images for sample in samples])
    labels = torch.cat([sample.labels for sample in samples])
    masks = torch.cat([sample.masks for sample in samples])
    maps = dl.attribute(model, images, labels, rules=RULES)
    titles = [model.classes[int(label)] for label in labels]
    figure = dl.viz.figure_grid(images, maps, titles=titles, masks=masks, size=1.8)
    out = Path(__file__).with_name("three_rules.png")
    figure.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
