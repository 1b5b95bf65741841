"""Models to explain: the shipped teaching CNN, and torchvision's ImageNet classifiers.

* :func:`teaching_model` returns a small VGG-style network (Simonyan & Zisserman, ICLR 2015) of
  plain ``Conv2d``/``ReLU``/``MaxPool2d`` layers, trained on :func:`deconvlab.data.shapes`. Its
  weights ship inside the package (safetensors, sha256-checked), so everything works offline.
  Max-pooling is what makes DeConvNet differ from a plain "deconvolution": its backward pass
  routes the signal through the recorded "switches" (Zeiler & Fergus, ECCV 2014, §2.1).
* :func:`torchvision_model` builds an ImageNet classifier through torchvision's weights API and
  its cache (``$TORCH_HOME/hub/checkpoints``), after checking the cached file against the hash
  recorded in its official name, and loads it without pickle (``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple
from unittest import mock

import torch
from torch import nn

from .checks import bias_of
from .data import CLASSES

__all__ = [
    "TEACHING_CONFIG",
    "WEIGHTS_DIR",
    "ImageNetModel",
    "TeachingCNN",
    "WeightsHashError",
    "WeightsUnavailableError",
    "cache_dir",
    "fold_batchnorm",
    "init_weights",
    "recorded_sha256",
    "teaching_metadata",
    "teaching_model",
    "torchvision_model",
]

#: Folder of the shipped weights.
WEIGHTS_DIR = Path(__file__).with_name("weights")
TEACHING_WEIGHTS = WEIGHTS_DIR / "teaching_model.safetensors"
TEACHING_META = WEIGHTS_DIR / "teaching_model.json"


class WeightsHashError(ValueError):
    """A weights file does not match the sha256 recorded for it."""


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are not on disk and cannot be downloaded."""


# --------------------------------------------------------------------------------------------
# the teaching model
# --------------------------------------------------------------------------------------------

#: Convolution widths; ``"M"`` is a 2x2 max-pool (VGG notation).
TEACHING_CONFIG: tuple[int | str, ...] = (16, "M", 32, "M", 64, 64, "M", 128, "M")


def init_weights(module: nn.Module) -> None:
    """Initialise a layer for a ReLU network, in place; other modules are left alone.

    Convolutions: He-normal weights (``fan_out``, ReLU gain; He et al., ICCV 2015);
    linear layers: ``N(0, 0.01²)``; zero biases. Draws from torch's global generator.
    """
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01)
    else:
        return
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class TeachingCNN(nn.Module):
    """A small VGG-style CNN for 3x64x64 images of shapes.

    ``features`` holds 3x3 convolutions (padding 1), each followed by its own ``nn.ReLU``, and
    2x2 max-pools; ``classifier`` averages the last feature map over space and applies one linear
    layer (global average pooling, Lin et al. 2014). With the default configuration the module
    paths are::

        features.0  Conv2d(3, 16)    features.1  ReLU   features.2  MaxPool2d   -> 32x32
        features.3  Conv2d(16, 32)   features.4  ReLU   features.5  MaxPool2d   -> 16x16
        features.6  Conv2d(32, 64)   features.7  ReLU
        features.8  Conv2d(64, 64)   features.9  ReLU   features.10 MaxPool2d   -> 8x8
        features.11 Conv2d(64, 128)  features.12 ReLU   features.13 MaxPool2d   -> 4x4
        classifier.0 AdaptiveAvgPool2d(1)  classifier.1 Flatten  classifier.2 Linear(128, 6)

    Parameters
    ----------
    num_classes : int, default 6
        Number of outputs.
    config : sequence, optional
        Widths and ``"M"`` pools, as in torchvision's VGG.
    batchnorm : bool, default False
        Insert ``BatchNorm2d`` after each convolution. Only for training: :func:`fold_batchnorm`
        turns such a model back into plain Conv/ReLU/MaxPool, which is what is shipped.
    """

    def __init__(
        self,
        num_classes: int = len(CLASSES),
        config: tuple[int | str, ...] = TEACHING_CONFIG,
        batchnorm: bool = False,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(width, int(item), 3, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(int(item)))
            layers.append(nn.ReLU(inplace=True))
            width = int(item)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
        )
        self.config = tuple(config)
        self.classes: tuple[str, ...] = CLASSES if num_classes == len(CLASSES) else ()
        for module in self.modules():
            init_weights(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@torch.no_grad()
def fold_batchnorm(model: TeachingCNN) -> TeachingCNN:
    """Return a plain (no BatchNorm) :class:`TeachingCNN` computing the same eval-mode function.

    Each ``Conv -> BN`` pair becomes one convolution with weight ``w * g / sqrt(v + eps)`` and bias
    ``(b - m) * g / sqrt(v + eps) + beta`` (Ioffe & Szegedy 2015, eval-mode BN is affine).
    """
    head = model.classifier[-1]
    if not isinstance(head, nn.Linear):
        raise TypeError(f"the classifier must end with nn.Linear, not {type(head).__name__}")
    plain = TeachingCNN(head.out_features, model.config, batchnorm=False)
    convs = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    src = list(model.features)
    k = 0
    for i, m in enumerate(src):
        if not isinstance(m, nn.Conv2d):
            continue
        w, b = m.weight.clone(), bias_of(m).clone()
        bn = src[i + 1] if i + 1 < len(src) else None
        if isinstance(bn, nn.BatchNorm2d):
            if bn.running_mean is None or bn.running_var is None:
                raise ValueError("cannot fold a BatchNorm2d without running statistics "
                                 "(track_running_stats=False)")
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = w * scale.view(-1, 1, 1, 1)
            b = (b - bn.running_mean) * scale + bn.bias
        convs[k].weight.copy_(w)
        bias_of(convs[k]).copy_(b)
        k += 1
    plain.classifier.load_state_dict(model.classifier.state_dict())
    plain.classes = model.classes
    return plain.eval()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def teaching_model(device: torch.device | str | None = None, pretrained: bool = True) -> TeachingCNN:
    """The shipped teaching CNN, trained on :func:`deconvlab.data.shapes`, in eval mode.

    The weights are read from ``deconvlab/weights/teaching_model.safetensors`` (no pickle) after
    checking their sha256 against ``teaching_model.json``. Parameters keep ``requires_grad=True``.

    Parameters
    ----------
    device : torch.device or str, optional
        Where to put the model (default: CPU).
    pretrained : bool, default True
        ``False`` gives the same architecture with fresh He-initialised weights (for the
        model-randomisation sanity check of Adebayo et al., NeurIPS 2018).

    Returns
    -------
    TeachingCNN
        ``model.classes`` names the outputs (``deconvlab.data.CLASSES``).

    Raises
    ------
    WeightsHashError
        If the weights file does not match its recorded sha256.
    """
    model = TeachingCNN()
    if pretrained:
        from safetensors.torch import load as load_safetensors

        meta = json.loads(TEACHING_META.read_text())
        data = TEACHING_WEIGHTS.read_bytes()
        digest = _sha256_bytes(data)
        if digest != meta["sha256"]:
            raise WeightsHashError(
                f"{TEACHING_WEIGHTS} has sha256 {digest}, but {TEACHING_META.name} records "
                f"{meta['sha256']}; the file is corrupt or was replaced (reinstall deconvlab, or "
                "retrain with `python -m deconvlab.train`)"
            )
        model.load_state_dict(load_safetensors(data))
        model.classes = tuple(meta.get("classes", CLASSES))
    return model.to(device).eval()


def teaching_metadata() -> dict[str, Any]:
    """Training metadata recorded with the shipped weights (accuracy, steps, seconds, ...)."""
    return json.loads(TEACHING_META.read_text())


# --------------------------------------------------------------------------------------------
# torchvision ImageNet models
# --------------------------------------------------------------------------------------------


class ImageNetModel(NamedTuple):
    """What :func:`torchvision_model` returns; unpack it as ``model, preprocess, categories, _``.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode.
    preprocess : callable
        The weights' own transform (resize, centre crop, ImageNet normalisation) taking a PIL
        image or a uint8/float tensor.
    categories : list of str
        The 1000 ImageNet class names, from the weights' metadata.
    weights : torchvision.models.WeightsEnum or None
        The weights used (``None`` for a randomly initialised network).
    """

    model: nn.Module
    preprocess: Callable
    categories: list[str]
    weights: Any


def cache_dir() -> Path:
    """torchvision's weights cache: ``torch.hub.get_dir()/checkpoints`` (honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")  # as torch.hub.HASH_REGEX


def recorded_sha256(file_name: str) -> str:
    """The sha256 (or its prefix) recorded for an official weights file.

    torchvision embeds the first hex digits of each file's sha256 in its name
    (``resnet18-f37072fd.pth``); ``torch.hub`` checks them only when downloading, never for a file
    already in the cache, so :func:`torchvision_model` checks them every time it loads.
    """
    match = _HASH_IN_NAME.search(file_name)
    if not match:
        raise WeightsHashError(f"no hash is recorded for {file_name!r}; refusing to load it")
    return match.group(1)


_verified: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _verified[key] = h.hexdigest()
    return _verified[key]


def _offline() -> bool:
    return os.environ.get("DECONVLAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(name: str, url: str, path: Path, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"weights for {name} are not available ({why}): missing file {path.name!r} in "
        f"{path.parent}. Download {url} on a machine with internet and copy it into that "
        "folder (or point TORCH_HOME at a folder whose hub/checkpoints holds it)."
    )


def _reachable(url: str, timeout: float) -> bool:
    """Whether the host of ``url`` answers a TCP connection within ``timeout`` seconds.

    Runs in a daemon thread so that even a DNS lookup (which ignores socket timeouts) cannot
    block the caller longer than ``timeout``.
    """
    from urllib.parse import urlparse

    host = urlparse(url).hostname or ""
    ok = []

    def probe():
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def _fetch(name: str, url: str, path: Path, timeout: float) -> None:
    """Download ``url`` to ``path`` with torch.hub, or raise :class:`WeightsUnavailableError`."""
    if not _reachable(url, timeout):
        raise _unavailable(name, url, path, f"no network: {url} unreachable")
    path.parent.mkdir(parents=True, exist_ok=True)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # a stalled read fails instead of hanging
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=recorded_sha256(path.name))
    except Exception as e:
        raise _unavailable(name, url, path, f"download failed: {e}") from e
    finally:
        socket.setdefaulttimeout(old)


def _verified_state_dict(name: str, weights: Any, download: bool | None, timeout: float):
    path = cache_dir() / os.path.basename(weights.url)
    if not path.is_file():
        if download is False or (download is None and _offline()):
            raise _unavailable(name, weights.url, path, "offline: downloading is disabled")
        _fetch(name, weights.url, path, timeout)
    expected = recorded_sha256(path.name)
    actual = _file_sha256(path)
    if not actual.startswith(expected):
        raise WeightsHashError(
            f"{path} has sha256 {actual[:16]}..., not the recorded {expected}: the cached file "
            f"is corrupt or not the official one. Delete it and download {weights.url} again."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


_load_lock = threading.Lock()


def torchvision_model(
    name: str,
    weights: Any = "DEFAULT",
    download: bool | None = None,
    device: torch.device | str | None = None,
    timeout: float = 5.0,
) -> ImageNetModel:
    """An ImageNet classifier from torchvision, with its preprocessing and class names.

    Tested with ``alexnet``, ``vgg16``, ``resnet18`` and ``squeezenet1_1``; any name of
    ``torchvision.models.list_models(torchvision.models)`` is accepted.

    Parameters
    ----------
    name : str
        torchvision model name, e.g. ``"resnet18"``.
    weights : str, WeightsEnum or None, default "DEFAULT"
        ``"DEFAULT"``, a weights name such as ``"IMAGENET1K_V1"``, an enum member, or ``None``
        for an untrained network (e.g. to show what the maps of a random network look like).
    download : bool, optional
        Whether a missing file may be downloaded. ``None`` (default) means yes unless the
        environment variable ``DECONVLAB_OFFLINE=1`` is set.
    device : torch.device or str, optional
        Where to put the model.
    timeout : float, default 5
        Seconds to wait for the network before giving up (never hangs).

    Returns
    -------
    ImageNetModel
        ``(model, preprocess, categories, weights)``; the model is in eval mode.

    Raises
    ------
    ValueError
        Unknown model or weights name.
    WeightsUnavailableError
        The file is not in the cache and cannot be downloaded; the message names the file,
        the folder to put it in and its URL.
    WeightsHashError
        The cached file does not match the hash in its official name.
    """
    import torchvision
    from torchvision.models import _api
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    from torchvision.transforms._presets import ImageClassification

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown torchvision model {name!r}; choose from {', '.join(known)}")
    if weights is None:
        model = torchvision.models.get_model(name, weights=None)
        preprocess = ImageClassification(crop_size=224)
        return ImageNetModel(model.to(device).eval(), preprocess, list(_IMAGENET_CATEGORIES), None)
    enum = torchvision.models.get_model_weights(name)
    try:
        w = enum.verify(weights)
    except KeyError:
        options = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(f"unknown weights {weights!r} for {name}; choose from {options}") from None
    state = _verified_state_dict(name, w, download, timeout)

    def from_verified(url, *args, **kwargs):  # torchvision's loader, fed the checked file
        if url != w.url:
            raise RuntimeError(f"unexpected weights URL {url}")
        return state

    # torchvision's own builder handles each architecture's quirks (num_classes, old key
    # names, auxiliary heads); only its file loading (pickle, weights_only=False) is replaced.
    if hasattr(_api, "load_state_dict_from_url"):
        with _load_lock, mock.patch.object(_api, "load_state_dict_from_url", from_verified):
            model = torchvision.models.get_model(name, weights=w)
    else:  # a torchvision that loads differently: build, then load the checked state dict
        model = torchvision.models.get_model(name, weights=None, num_classes=len(w.meta["categories"]))
        model.load_state_dict(state)
    return ImageNetModel(model.to(device).eval(), w.transforms(), list(w.meta["categories"]), w)
