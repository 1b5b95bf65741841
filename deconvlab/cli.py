"""Command line: ``deconvlab explain`` draws the maps of one image for one or all rules.

Examples
--------
::

    deconvlab explain --sample star -o star.png                  # teaching model, offline
    deconvlab explain --sample chelsea --model resnet18 -o cat.png --target "tiger cat"
    deconvlab explain photo.jpg --model vgg16 --rule guided_backprop --target top -o out.png
    deconvlab explain --sample ring --layer features.8 -o ring_layer.png

Inputs: ``--sample`` names a shape class of :func:`deconvlab.data.shapes` (disc, square, triangle,
cross, star, ring) or a photo of :data:`deconvlab.data.PHOTOS` (chelsea, coffee, rocket, astronaut,
grace_hopper); ``IMAGE`` is any file PIL can read. Images are brought to the model's input size:
64 px for the teaching model (resize the short side, centre crop; photos work but the teaching
model only knows shapes), 224 px with ImageNet preprocessing for torchvision models.

Errors (bad path, unknown model, class, rule or layer, missing weights) print one line
``deconvlab: error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from .rules import BUILTIN_NAMES, get_rule

__all__ = ["CLIError", "main"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise CLIError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="deconvlab", description="Gradient, DeConvNet and guided-backprop maps.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    e = sub.add_parser("explain", help="draw the maps of one image", description=__doc__)
    e.formatter_class = argparse.RawDescriptionHelpFormatter
    e.add_argument("image", nargs="?", help="image file (or use --sample)")
    e.add_argument("--sample", metavar="NAME", help="a shape class (e.g. star) or a photo name")
    e.add_argument("--model", default="teaching", help="teaching (default) or a torchvision name")
    e.add_argument("--weights", default="DEFAULT", help="torchvision weights, or 'none' (random)")
    e.add_argument("--rule", default="all", help="all (default), or comma-separated rule names")
    e.add_argument("--target", default="top", help="class index or name, or top (predicted)")
    e.add_argument("--layer", help="module path (e.g. features.8): map that layer's signal")
    e.add_argument("--kind", default=None, choices=("signed", "heatmap", "overlay"),
                   help="display (default: signed for pixels, heatmap for a layer)")
    e.add_argument("--seed", type=int, default=0, help="which shapes sample to draw")
    e.add_argument("-o", "--output", required=True, help="output figure (.png, .pdf, .svg)")
    e.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


# ------------------------------------------------------------------------------------------
# model and input
# ------------------------------------------------------------------------------------------


def _load_model(name: str, weights: str):
    """``(model, categories, size, imagenet_normalised, preprocess)``."""
    from . import models

    if name == "teaching":
        model = models.teaching_model()
        return model, list(model.classes), 64, False, None
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise CLIError(f"unknown model {name!r}; use teaching or a torchvision classifier "
                       f"such as alexnet, vgg16, resnet18, squeezenet1_1")
    w = None if weights.lower() == "none" else weights
    try:
        m = models.torchvision_model(name, weights=w)
    except ValueError as err:
        raise CLIError(str(err)) from None
    return m.model, m.categories, 224, True, m.preprocess


def _load_input(args, size: int, imagenet: bool, preprocess):
    """``(x (1,3,size,size), mask or None, description)``."""
    from . import data

    if (args.image is None) == (args.sample is None):
        raise CLIError("give either an IMAGE path or --sample NAME")
    if args.sample is not None:
        name = args.sample
        if name in data.CLASSES:
            ds = data.shape_sample(name, seed=args.seed)
            x = ds.images
            mask: torch.Tensor | None = ds.masks
            if imagenet:
                x = _to_imagenet(x, size)
                mask = None
            return x, mask, f"{name} (seed {args.seed})"
        if name in data.PHOTOS:
            return data.sample_image(name, size=size, normalize=imagenet), None, name
        raise CLIError(f"unknown sample {name!r}; choose from "
                       f"{', '.join((*data.CLASSES, *data.PHOTOS))}")
    path = Path(args.image)
    try:
        from PIL import Image

        with Image.open(path) as im:
            pil = im.convert("RGB")
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read image {str(path)!r}: {err}") from None
    if preprocess is not None:
        return preprocess(pil).unsqueeze(0), None, path.name
    from torchvision.transforms import functional as TF

    pil = TF.center_crop(TF.resize(pil, size, antialias=True), size)
    return TF.to_tensor(pil).unsqueeze(0), None, path.name


def _to_imagenet(x: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.transforms import functional as TF

    from .data import IMAGENET_MEAN, IMAGENET_STD

    x = TF.resize(x, [size, size], antialias=True).clamp(0, 1)
    return TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def _target(spec: str, categories: Sequence[str], logits: torch.Tensor) -> int:
    if spec == "top":
        return int(logits.argmax())
    if spec.lstrip("-").isdigit():
        k = int(spec)
        if not 0 <= k < len(categories):
            raise CLIError(f"class index {k} out of range 0..{len(categories) - 1}")
        return k
    lower = [c.lower() for c in categories]
    if spec.lower() in lower:
        return lower.index(spec.lower())
    hint = ", ".join(categories) if len(categories) <= 20 else "see the model's categories"
    raise CLIError(f"unknown class {spec!r}; use top, an index or a class name ({hint})")


def _rules(spec: str) -> list[str]:
    """The canonical names of ``--rule``: ``all`` (the built-in rules) or comma-separated names, aliases."""
    if spec == "all":
        return list(BUILTIN_NAMES)
    names = [r.strip() for r in spec.split(",") if r.strip()]
    if not names:
        raise CLIError(
            f"--rule {spec!r} names no rule; give all, or names such as {', '.join(BUILTIN_NAMES)}"
        )
    try:
        return list(dict.fromkeys(get_rule(name).name for name in names))
    except (ValueError, TypeError) as err:
        raise CLIError(f"{err} (or all)") from None


def _check_layer(model: torch.nn.Module, layer: str | None) -> None:
    if layer is not None and layer not in dict(model.named_modules()):
        raise CLIError(f"model has no layer {layer!r} (see print(model) for module paths)")


# ------------------------------------------------------------------------------------------
# explain
# ------------------------------------------------------------------------------------------


def explain(args) -> str:
    """Run ``deconvlab explain``; returns the line to print."""
    from .attribution import attribute
    from .viz import figure_grid

    rules = _rules(args.rule)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise CLIError(f"output folder {str(out.parent)!r} does not exist")
    model, categories, size, imagenet, preprocess = _load_model(args.model, args.weights)
    x, mask, what = _load_input(args, size, imagenet, preprocess)
    _check_layer(model, args.layer)
    with torch.no_grad():
        probs = model(x).softmax(1)[0]
    target = _target(args.target, categories, probs)
    maps = attribute(model, x, target, rules=rules, layer=args.layer)
    kind = args.kind or ("heatmap" if args.layer else "signed")
    title = f"{categories[target]} ({probs[target]:.0%})"
    layer = f" at {args.layer}" if args.layer else ""
    fig = figure_grid(x, maps, titles=[title], kind=kind, imagenet=imagenet, masks=mask)
    fig.suptitle(f"{what}: {args.model}{layer}, class {target} {title}", fontsize=10)
    try:
        fig.savefig(out, dpi=120)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot write {str(out)!r}: {err}") from None
    top = int(probs.argmax())
    return (f"{what}: {args.model} predicts {categories[top]} ({probs[top]:.0%}); "
            f"explained {categories[target]} with {', '.join(maps)}{layer} -> {out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deconvlab`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = _parser().parse_args(argv)
        if args.command != "explain":
            raise CLIError("a command is required: explain (see deconvlab explain --help)")
        print(explain(args))
        return 0
    except CLIError as err:
        print(f"deconvlab: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # weights missing, bad layer, ...: one line unless --debug
        if debug:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"deconvlab: error: {msg}", file=sys.stderr)
        return 1 if not isinstance(err, (LookupError, ValueError, OSError)) else 2
