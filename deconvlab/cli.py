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
grace_hopper); ``IMAGE`` is any file PIL can read. 16-bit images (``I;16`` PNG or TIFF) are scaled by
their real bit depth (65535 is white), 8-bit ones by 255. Images are brought to the model's input
size: 64 px for the teaching model (resize the short side, centre crop; photos work but the teaching
model only knows shapes), 224 px with ImageNet preprocessing for torchvision models.

Exit status
-----------
0
    The figure was written.
2
    A user error, printed as one line ``deconvlab: error: ...`` on stderr: a bad option, an
    unknown model, weights, sample, class, rule or layer, a layer that does not run exactly once,
    an image that cannot be read or is larger than Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``), missing or corrupt weights, an output that cannot be written.
1
    An internal error (a bug): one line ``deconvlab: error: internal error: ...``; ``--debug``
    shows the traceback.
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
    """A user error: printed as one line, exit status 2 (any other exception is a bug: status 1)."""


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
    e.add_argument(
        "--kind",
        default=None,
        choices=("signed", "heatmap", "overlay"),
        help="display (default: signed for pixels, heatmap for a layer)",
    )
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
        model = _teaching()
        return model, list(model.classes), 64, False, None
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise CLIError(
            f"unknown model {name!r}; use teaching or a torchvision classifier "
            f"such as alexnet, vgg16, resnet18, squeezenet1_1"
        )
    w = None if weights.lower() == "none" else weights
    try:
        m = models.torchvision_model(name, weights=w)
    except (ValueError, OSError) as err:  # unknown weights, missing or corrupt file
        raise CLIError(str(err)) from None
    return m.model, m.categories, 224, True, m.preprocess


def _teaching():
    from . import models

    try:
        return models.teaching_model()
    except models.WeightsHashError as err:  # a damaged installation: the message says what to do
        raise CLIError(str(err)) from None


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
        raise CLIError(f"unknown sample {name!r}; choose from {', '.join((*data.CLASSES, *data.PHOTOS))}")
    path = Path(args.image)
    x = _read_image(path)
    if preprocess is not None:
        return preprocess(x).unsqueeze(0), None, path.name
    from torchvision.transforms import functional as TF

    return TF.center_crop(TF.resize(x, size, antialias=True), size).unsqueeze(0), None, path.name


def _read_image(path: Path) -> torch.Tensor:
    """The image at ``path`` as a ``(3, H, W)`` float tensor in [0, 1], scaled by its bit depth.

    An image above Pillow's decompression-bomb limit is refused (also in the range where Pillow
    only warns), before its pixels are decoded.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return _pixels(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise CLIError(f"refusing image {str(path)!r}: {err} (limit: PIL.Image.MAX_IMAGE_PIXELS)") from None
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot read image {str(path)!r}: {err}") from None


def _full_scale(im) -> float:
    """The value of white in a one-channel image of more than 8 bits (mode ``I;16``, ``I`` or ``F``)."""
    if im.mode.startswith("I;16"):
        return 65535.0
    if im.mode == "F":
        return 1.0
    if im.format == "PNG":  # PNG samples have at most 16 bits
        return 65535.0
    bits = getattr(im, "tag_v2", {}).get(258)  # TIFF BitsPerSample
    if bits:
        return float(2 ** int(bits[0] if isinstance(bits, tuple) else bits) - 1)
    raise ValueError(
        f"cannot tell the bit depth of this {im.format} image of mode {im.mode}; "
        "save it as an 8- or 16-bit PNG"
    )


def _pixels(im) -> torch.Tensor:
    """Decode ``im`` to ``(3, H, W)`` floats in [0, 1].

    Grey images of more than 8 bits are scaled by their own bit depth; converting them to 8-bit
    RGB would clip them, turning a 16-bit image almost white.
    """
    import numpy as np

    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        grey = np.asarray(im, dtype=np.float32) / _full_scale(im)
        if not np.isfinite(grey).all() or grey.min() < 0 or grey.max() > 1:
            raise ValueError(
                f"its {im.mode} values span [{grey.min():.3g}, {grey.max():.3g}] of full scale, not [0, 1]"
            )
        return torch.from_numpy(np.ascontiguousarray(grey)).expand(3, *grey.shape).clone()
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


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


def _predict(model: torch.nn.Module, x: torch.Tensor, layer: str | None) -> torch.Tensor:
    """The class probabilities of ``x``; refuses a ``layer`` that is absent or does not run once."""
    from .model_state import removing

    module = None if layer is None else dict(model.named_modules()).get(layer)
    if layer is not None and module is None:
        raise CLIError(f"model has no layer {layer!r} (see print(model) for module paths)")
    calls: list[int] = []
    with removing([]) as handles, torch.no_grad():
        if module is not None:
            handles.append(module.register_forward_hook(lambda *_: calls.append(1)))
        probs = model(x).softmax(1)[0]
    if module is not None and len(calls) != 1:
        raise CLIError(
            f"layer {layer!r} runs {len(calls)} times in one forward pass, so its signal "
            "is ambiguous; choose a module that runs once (see print(model))"
        )
    return probs


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
    probs = _predict(model, x, args.layer)
    target = _target(args.target, categories, probs)
    maps = attribute(model, x, target, rules=rules, layer=args.layer)
    kind = args.kind or ("heatmap" if args.layer else "signed")
    title = f"{categories[target]} ({probs[target]:.0%})"
    layer = f" at {args.layer}" if args.layer else ""
    heading = f"{what}: {args.model}{layer}, class {target} {title}"
    fig = figure_grid(x, maps, titles=[title], kind=kind, imagenet=imagenet, masks=mask, title=heading)
    try:
        fig.savefig(out, dpi=120)
    except (OSError, ValueError) as err:
        raise CLIError(f"cannot write {str(out)!r}: {err}") from None
    top = int(probs.argmax())
    return (
        f"{what}: {args.model} predicts {categories[top]} ({probs[top]:.0%}); "
        f"explained {categories[target]} with {', '.join(maps)}{layer} -> {out}"
    )


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
    except Exception as err:  # a bug: one line unless --debug
        if debug:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(
            f"deconvlab: error: internal error: {type(err).__name__}: {msg} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
