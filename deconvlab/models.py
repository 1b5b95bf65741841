"""Models to explain: the shipped teaching CNN, and torchvision's ImageNet classifiers.

* :func:`teaching_model` returns a small VGG-style network (Simonyan & Zisserman, ICLR 2015) of
  plain ``Conv2d``/``ReLU``/``MaxPool2d`` layers, trained on :func:`deconvlab.data.shapes`. Its
  weights ship inside the package (safetensors, sha256-checked), so everything works offline.
  Max-pooling is what makes DeConvNet differ from a plain "deconvolution": its backward pass
  routes the signal through the recorded "switches" (Zeiler & Fergus, ECCV 2014, §2.1).
* :func:`torchvision_model` builds an ImageNet classifier from torchvision's weights API and
  cache (``$TORCH_HOME/hub/checkpoints``): it reads the cached file once, checks those bytes
  against the hash recorded in the file's official name, and loads the same bytes without pickle
  (``weights_only=True``) into the architecture built with ``weights=None`` and the keyword
  arguments torchvision's builder sets for those weights (read from the builder's source). It
  changes no process-wide setting and replaces nothing of torchvision, so other threads loading
  torchvision weights at the same time are unaffected.
* :func:`photo_model` is what the notebooks' photo sections call: the trained ImageNet network where
  the network is there (Binder and Colab, :func:`deconvlab.runtime.hosted_environment`, download
  allowed) or its weights are cached, else the untrained architecture, with a sentence saying
  which and why. ``download=`` or ``DECONVLAB_DOWNLOAD=1``/``0`` overrides the choice.
"""

from __future__ import annotations

import ast
import hashlib
import http.client
import inspect
import io
import json
import os
import re
import socket
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable, NamedTuple
from urllib.request import urlopen

import torch
from torch import nn

from .checks import as_bool, as_int, as_real, as_str, bias_of
from .data import CLASSES
from .runtime import hosted_environment

__all__ = [
    "TEACHING_CONFIG",
    "WEIGHTS_DIR",
    "ImageNetModel",
    "PhotoModel",
    "TeachingCNN",
    "WeightsHashError",
    "WeightsUnavailableError",
    "cache_dir",
    "fold_batchnorm",
    "init_weights",
    "photo_model",
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
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
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
                raise ValueError(
                    "cannot fold a BatchNorm2d without running statistics (track_running_stats=False)"
                )
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
        If the weights file does not match its recorded sha256 (a ``ValueError``).
    TypeError, ValueError
        ``device`` is no device (or one this machine does not have); ``pretrained`` is no bool.
    """
    device = _device(device)
    pretrained = as_bool("pretrained", pretrained)
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
    moved = _moved(model, device)
    assert isinstance(moved, TeachingCNN)
    return moved.eval()


def _device(device: object) -> torch.device | None:
    """``device`` as a ``torch.device`` this machine has (None stays None); the errors name it."""
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(
            f"device must be a torch.device or a string such as 'cpu', got {type(device).__name__}"
        )
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, ValueError, OverflowError) as error:
        raise ValueError(f"device {device!r:.40} is not a device: {error}") from None
    available: dict[str, Callable[[], bool]] = {
        "cuda": torch.cuda.is_available,
        "mps": torch.backends.mps.is_available,
    }
    if resolved.type in available and not available[resolved.type]():
        raise ValueError(f"device {str(resolved)!r} is not available on this machine; use device='cpu'")
    return resolved


def _moved(model: nn.Module, device: torch.device | None) -> nn.Module:
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as error:  # AssertionError: a backend torch was not built with
        raise ValueError(f"device {str(device)!r} cannot hold the model: {error}") from None


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


def _download(url: str, partial: Path, timeout: float) -> str:
    """Stream ``url`` into ``partial``; returns the sha256 of the bytes written.

    ``timeout`` applies to this request alone (connection and every read), so a stalled
    download fails instead of hanging, and no process-wide socket setting changes.
    """
    digest = hashlib.sha256()
    with urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _fetch(name: str, url: str, path: Path, timeout: float) -> None:
    """Download ``url`` to ``path`` (hash-checked before it enters the cache), or raise.

    Raises :class:`WeightsUnavailableError` when the network fails, :class:`WeightsHashError`
    when the downloaded bytes do not match the hash in the file's official name.
    """
    if not _reachable(url, timeout):
        raise _unavailable(name, url, path, f"no network: {url} unreachable")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    try:
        try:
            digest = _download(url, partial, timeout)
        except (OSError, http.client.HTTPException) as e:
            raise _unavailable(name, url, path, f"download failed: {e}") from e
        expected = recorded_sha256(path.name)
        if not digest.startswith(expected):
            raise WeightsHashError(
                f"the download of {url} has sha256 {digest[:16]}..., not the "
                f"recorded {expected}; nothing was written to {path.parent}"
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _verified_state_dict(name: str, weights: Any, download: bool | None, timeout: float) -> dict:
    """The cached file's state dict, loaded from the very bytes whose sha256 was checked."""
    path = cache_dir() / os.path.basename(weights.url)
    if not path.is_file():
        if download is False or (download is None and _offline()):
            raise _unavailable(name, weights.url, path, "offline: downloading is disabled")
        _fetch(name, weights.url, path, timeout)
    expected = recorded_sha256(path.name)
    data = path.read_bytes()  # read once: what is hashed is what is loaded
    actual = _sha256_bytes(data)
    if not actual.startswith(expected):
        raise WeightsHashError(
            f"{path} has sha256 {actual[:16]}..., not the recorded {expected}: the cached file "
            f"is corrupt or not the official one. Delete it and download {weights.url} again."
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# How torchvision's builder treats an architecture when it is given weights, read from its source:
# the keyword arguments it sets (``_ovewrite_named_param`` / ``kwargs[...] = ...``), the loader it
# calls (densenet renames old keys) and the attributes it sets after loading (googlenet drops its
# auxiliary heads). The architecture is then built with ``weights=None`` and those arguments.


class _Unknown(Exception):
    """A statement or expression of a torchvision builder that this reader does not model."""


class _BuildPlan:
    """What torchvision's builder does with weights: ``kwargs``, ``loader``, ``after`` (attributes)."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.loader: Callable[..., Any] | None = None
        self.after: list[tuple[str, Any]] = []


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
}
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
}


def _call_value(node: ast.Call, env: dict[str, Any]) -> Any:
    args = [_value(a, env) for a in node.args]
    if isinstance(node.func, ast.Name) and node.func.id == "len" and len(args) == 1 and not node.keywords:
        return len(args[0])
    if isinstance(node.func, ast.Attribute) and node.func.attr == "get" and not node.keywords:
        owner = _value(node.func.value, env)
        if isinstance(owner, dict):
            return owner.get(*args)
    raise _Unknown(ast.unparse(node))


def _value(node: ast.AST, env: dict[str, Any]) -> Any:
    """Evaluate the few expression forms torchvision's builders use (no ``eval``)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
        return getattr(_value(node.value, env), node.attr)
    if isinstance(node, ast.Subscript):
        return _value(node.value, env)[_value(node.slice, env)]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e, env) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand, env)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_value(node.left, env), _value(node.right, env))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        left, right = _value(node.left, env), _value(node.comparators[0], env)
        return _COMPARE[type(node.ops[0])](left, right)
    if isinstance(node, ast.Call):
        return _call_value(node, env)
    raise _Unknown(ast.unparse(node))


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _weights_call(call: ast.Call, env: dict[str, Any], plan: _BuildPlan, fn: Callable[..., Any]) -> None:
    """A call inside an ``if weights`` block of a builder: record what it does to the model."""
    func = call.func
    if _is_name(func, "_ovewrite_named_param") and len(call.args) == 3:
        plan.kwargs[_value(call.args[1], env)] = _value(call.args[2], env)
    elif isinstance(func, ast.Attribute) and func.attr == "load_state_dict" and _is_name(func.value, "model"):
        pass  # the plain load of the state dict: done by torchvision_model
    elif (
        isinstance(func, ast.Name)
        and not call.args
        and {k.arg for k in call.keywords} == {"model", "weights", "progress"}
    ):
        plan.loader = fn.__globals__[func.id]  # e.g. densenet's loader that renames old keys
    elif not (isinstance(func, ast.Attribute) and func.attr == "warn"):
        raise _Unknown(ast.unparse(call))


def _weights_statement(stmt: ast.stmt, env: dict[str, Any], plan: _BuildPlan, fn: Callable[..., Any]) -> None:
    """A statement inside an ``if weights`` block: a keyword argument, a load or a fix-up."""
    if isinstance(stmt, ast.Assert):
        return
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        _weights_call(stmt.value, env, plan, fn)
        return
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
        raise _Unknown(ast.unparse(stmt))
    target = stmt.targets[0]
    if isinstance(target, ast.Subscript) and _is_name(target.value, "kwargs"):
        plan.kwargs[_value(target.slice, env)] = _value(stmt.value, env)
    elif isinstance(target, ast.Attribute) and _is_name(target.value, "model"):
        plan.after.append((target.attr, _value(stmt.value, env)))
    else:
        raise _Unknown(ast.unparse(stmt))


def _remember(stmt: ast.Assign, env: dict[str, Any]) -> None:
    """``name = value`` outside the weights blocks, e.g. ``original_aux_logits = kwargs.get(...)``.

    A value this reader cannot compute is forgotten, so that a later use of it fails loudly.
    """
    target = stmt.targets[0]
    if len(stmt.targets) != 1 or not isinstance(target, ast.Name) or target.id in ("weights", "kwargs"):
        return
    try:
        env[target.id] = _value(stmt.value, env)
    except (_Unknown, LookupError, TypeError, AttributeError, ValueError):
        env.pop(target.id, None)


def _run(
    stmts: list[ast.stmt],
    env: dict[str, Any],
    plan: _BuildPlan,
    fn: Callable[..., Any],
    in_weights: bool = False,
) -> None:
    """Walk a builder's statements; only what depends on ``weights`` is recorded in ``plan``."""
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            if in_weights or _mentions(stmt.test, "weights"):
                _run(stmt.body if _value(stmt.test, env) else stmt.orelse, env, plan, fn, True)
        elif in_weights:
            _weights_statement(stmt, env, plan, fn)
        elif isinstance(stmt, ast.Assign):
            _remember(stmt, env)


def _builder_functions(builder: Callable[..., Any]) -> list[Callable[..., Any]]:
    """The builder and, in call order, the functions of its module that it calls (recursively)."""
    found: list[Callable[..., Any]] = []
    todo = [inspect.unwrap(builder)]
    while todo:
        fn = todo.pop(0)
        if fn in found:
            continue
        found.append(fn)
        for node in ast.walk(_function_tree(fn)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                callee = fn.__globals__.get(node.func.id)
                if inspect.isfunction(callee) and callee.__module__ == fn.__module__:
                    todo.append(callee)
    return found


def _function_tree(fn: Callable[..., Any]) -> ast.FunctionDef:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    if not isinstance(tree, ast.FunctionDef):
        raise _Unknown(f"{fn.__qualname__} is not a plain function")
    return tree


def _build_plan(builder: Callable[..., Any], weights: Any) -> _BuildPlan:
    """Read from torchvision's source what its ``builder`` does when given ``weights``.

    Raises ``_Unknown`` naming the first statement it does not model, so that an architecture
    built in a way not reproduced here fails loudly instead of coming out different.
    """
    plan = _BuildPlan()
    for fn in _builder_functions(builder):
        env: dict[str, Any] = {"weights": weights, "kwargs": plan.kwargs}
        _run(_function_tree(fn).body, env, plan, fn)
    return plan


class _CheckedWeights:
    """Stands in for a weights enum member in a torchvision loader: serves the checked state dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def get_state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self._state


def _build(name: str, weights: Any, state: dict[str, Any]) -> nn.Module:
    """``name`` built as torchvision's builder builds it for ``weights``, with ``state`` loaded.

    The architecture is made with ``weights=None`` and the keyword arguments the builder sets
    for those weights; nothing of torchvision is replaced and no file is read here.
    """
    import torchvision

    builder = torchvision.models.get_model_builder(name)
    try:
        plan = _build_plan(builder, weights)
    except (_Unknown, LookupError, TypeError, AttributeError, ValueError, OSError) as e:
        raise RuntimeError(
            f"cannot reproduce how torchvision builds {name} with {weights}: its builder does "
            f"`{e}`, which deconvlab does not model; use weights=None or another model"
        ) from None
    model = builder(weights=None, **plan.kwargs)
    if plan.loader is None:
        model.load_state_dict(state)
    else:
        plan.loader(model=model, weights=_CheckedWeights(state), progress=False)
    for attribute, value in plan.after:
        setattr(model, attribute, value)
    return model


def _weights_member(name: str, weights: Any) -> Any:
    """The weights enum member of ``name`` that ``weights`` names, if it has classes; else ValueError."""
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    if not isinstance(weights, (str, enum)):
        raise TypeError(
            f"weights must be None, a weights name such as 'DEFAULT' or a {enum.__name__} member, "
            f"got {type(weights).__name__}"
        )
    try:
        member = enum.verify(weights)
    except KeyError:
        options = ", ".join(["DEFAULT", *enum.__members__])
        raise ValueError(f"unknown weights {weights!r} for {name}; choose from {options}") from None
    if not member.meta.get("categories"):
        usable = ", ".join(m.name for m in enum if m.meta.get("categories"))
        raise ValueError(
            f"{name} weights {member.name} have no classes (they are for feature "
            f"extraction only); choose from {usable}"
        )
    return member


def _check_model_name(name: str) -> None:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown torchvision model {name[:40]!r} (name); choose from {', '.join(known)}")


def torchvision_model(
    name: str,
    weights: Any = "DEFAULT",
    download: bool | None = None,
    device: torch.device | str | None = None,
    timeout: float = 5.0,
) -> ImageNetModel:
    """An ImageNet classifier from torchvision, with its preprocessing and class names.

    Any name of ``torchvision.models.list_models(torchvision.models)`` is accepted. The network
    equals what torchvision's own builder makes with those weights (tested with resnet18,
    mobilenet_v3_small, squeezenet1_1, googlenet, inception_v3 and densenet121 on random weights).

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
        Seconds to wait for the network (the connection, then each read of a download) before
        giving up; it applies to this download alone, never to the process's sockets.

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
        The cached (or downloaded) file does not match the hash in its official name.
    RuntimeError
        torchvision's builder treats this architecture's weights in a way deconvlab does not
        reproduce (then nothing is returned rather than a different network).
    TypeError, ValueError
        ``name`` is no string; ``weights`` is of another kind; ``download`` is neither None
        nor a bool; ``device`` is no device this machine has; ``timeout`` is no number ``> 0``.

    Notes
    -----
    The file is read into memory, hashed and loaded from those bytes, so a file changed on disk
    is caught on every load; this takes the file's size in memory once more while loading.
    """
    import torchvision
    from torchvision.models._meta import _IMAGENET_CATEGORIES
    from torchvision.transforms._presets import ImageClassification

    name = as_str("name", name)
    if download is not None:
        download = as_bool("download", download)
    timeout = as_real("timeout", timeout, above=0)
    device = _device(device)
    _check_model_name(name)
    if weights is None:
        model = torchvision.models.get_model(name, weights=None)
        preprocess = ImageClassification(crop_size=224)
        return ImageNetModel(_moved(model, device).eval(), preprocess, list(_IMAGENET_CATEGORIES), None)
    w = _weights_member(name, weights)
    state = _verified_state_dict(name, w, download, timeout)
    model = _build(name, w, state)
    return ImageNetModel(_moved(model, device).eval(), w.transforms(), list(w.meta["categories"]), w)


# --------------------------------------------------------------------------------------------
# the photo sections' network: trained where the network is there, untrained and said so elsewhere
# --------------------------------------------------------------------------------------------


class PhotoModel(NamedTuple):
    """What :func:`photo_model` returns: an :class:`ImageNetModel` and the sentence that names it.

    Unpack it as ``model, preprocess, categories, weights, message``.

    Attributes
    ----------
    model, preprocess, categories, weights
        As in :class:`ImageNetModel`; ``weights`` is ``None`` for the untrained network.
    message : str
        One line saying which network the maps come from and why (print it under the cell).
    """

    model: nn.Module
    preprocess: Callable
    categories: list[str]
    weights: Any
    message: str

    @property
    def trained(self) -> bool:
        """Whether the network carries ImageNet weights."""
        return self.weights is not None


_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _download_choice(download: object) -> tuple[bool, str]:
    """Whether :func:`photo_model` may download, and the reason its message gives."""
    if download is not None:
        allowed = as_bool("download", download)
        return allowed, f"download={allowed} was passed"
    text = os.environ.get("DECONVLAB_DOWNLOAD", "").strip().lower()
    if text in _YES or text in _NO:
        return text in _YES, f"DECONVLAB_DOWNLOAD={text} is set"
    if text:
        raise ValueError(f"DECONVLAB_DOWNLOAD must be 1 (download) or 0 (do not), got {text[:20]!r}")
    if _offline():
        return False, "DECONVLAB_OFFLINE is set"
    host = hosted_environment()
    if host is not None:
        return True, f"this is {host.capitalize()}"
    return False, "this is not Binder or Colab"


def _untrained(name: str, seed: int, device: torch.device | str | None) -> ImageNetModel:
    """The architecture, randomly initialised from ``seed``; torch's global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision_model(name, weights=None, device=device)


def _untrained_message(
    name: str, seed: int, weights: Any, path: Path, why: str, error: Exception | None
) -> str:
    size = weights.meta.get("_file_size", 0)
    head = f"Maps from an UNTRAINED {name} (random weights, seed {seed}; its classes mean nothing): "
    if error is not None:
        return f"{head}downloading its ImageNet weights failed: {error}"
    return (
        f"{head}its ImageNet weights are not in torchvision's cache ({path.parent}) and nothing is "
        f"downloaded, as {why}. For the trained network pass download=True or set DECONVLAB_DOWNLOAD=1 "
        f"(fetches {size:.0f} MB from {weights.url}), or copy {path.name} into that folder."
    )


def photo_model(
    name: str = "resnet18",
    download: bool | None = None,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    timeout: float = 10.0,
) -> PhotoModel:
    """The ImageNet network of the photo sections: trained where possible, and a line saying which.

    The trained network (torchvision's default weights, hash-checked, :func:`torchvision_model`)
    comes from torchvision's cache, or is downloaded where downloading is allowed: by default on
    Binder and Colab only (:func:`deconvlab.runtime.hosted_environment`, read from the environment,
    no network probe). Otherwise, or if the download fails, the same architecture with random
    weights is returned, and ``message`` says so. Nothing touches the network unless a download
    is allowed and the file is not cached.

    Parameters
    ----------
    name : str, default "resnet18"
        A torchvision classifier.
    download : bool, optional
        Allow (True) or forbid (False) the download. Default: the environment variable
        ``DECONVLAB_DOWNLOAD`` (``1`` or ``0``) if set, else no if ``DECONVLAB_OFFLINE=1``, else
        yes on Binder and Colab and no elsewhere.
    seed : int, default 0
        Seed of the untrained network's initialisation (torch's global RNG is left as it was).
    device : torch.device or str, optional
        Where to put the model.
    timeout : float, default 10
        Seconds to wait for the connection and each read of a download.

    Returns
    -------
    PhotoModel
        ``(model, preprocess, categories, weights, message)``; ``weights`` is None (and
        ``.trained`` False) for the untrained network.

    Raises
    ------
    ValueError, TypeError
        Unknown ``name``; ``download`` neither None nor a bool; ``DECONVLAB_DOWNLOAD`` neither
        1 nor 0; see :func:`torchvision_model` for ``device`` and ``timeout``.
    WeightsHashError
        A cached or downloaded file is not the official one (never silently replaced by the
        untrained network: delete the file, as the message says).
    """
    _check_model_name(as_str("name", name))
    seed = as_int("seed", seed)
    allowed, why = _download_choice(download)
    weights = _weights_member(name, "DEFAULT")
    path = cache_dir() / os.path.basename(weights.url)
    cached = path.is_file()
    try:
        loaded = torchvision_model(name, download=allowed, device=device, timeout=timeout)
    except WeightsUnavailableError as error:
        message = _untrained_message(name, seed, weights, path, why, error if allowed else None)
        return PhotoModel(*_untrained(name, seed, device), message)
    top1 = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    accuracy = f", {top1:.1f}% top-1" if top1 else ""
    where = (
        f"found in torchvision's cache ({path.parent})"
        if cached
        else f"downloaded to {path.parent}, as {why}"
    )
    message = f"Maps from {name} trained on ImageNet ({weights.name}{accuracy}), {where}."
    return PhotoModel(*loaded, message)
