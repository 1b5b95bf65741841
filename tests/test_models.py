"""The teaching model and torchvision's ImageNet models (deconvlab.models)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time

import pytest
import torch
from torch import nn

from deconvlab import models
from deconvlab.data import CLASSES, shapes
from deconvlab.models import WeightsHashError, WeightsUnavailableError


@pytest.fixture(scope="module")
def teaching():
    return models.teaching_model()


def test_teaching_model_architecture(teaching):
    assert not teaching.training
    kinds = [type(m) for m in teaching.features]
    assert set(kinds) <= {nn.Conv2d, nn.ReLU, nn.MaxPool2d}, "plain Conv/ReLU/MaxPool only"
    assert kinds.count(nn.Conv2d) >= 4 and kinds.count(nn.MaxPool2d) >= 2
    relus = [m for m in teaching.modules() if isinstance(m, nn.ReLU)]
    assert len({id(m) for m in relus}) == len(relus) == kinds.count(nn.Conv2d)
    assert isinstance(dict(teaching.named_modules())["features.3"], nn.Conv2d)
    assert teaching.classes == CLASSES
    assert all(p.requires_grad for p in teaching.parameters())
    out = teaching(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, len(CLASSES))


def test_shipped_weights_are_small_and_recorded():
    meta = json.loads(models.TEACHING_META.read_text())
    data = models.TEACHING_WEIGHTS.read_bytes()
    assert len(data) < 2_000_000
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    assert meta["heldout_accuracy"] >= 0.95 and meta["heldout_images"] >= 2000
    assert meta["heldout_seed"] >= 10_000_000
    assert meta["classes"] == list(CLASSES)


def test_teaching_model_is_accurate_on_fresh_data(teaching):
    ds = shapes(400, seed=10_000_000, offset=20_000)  # held-out seed, images never evaluated
    with torch.no_grad():
        acc = (teaching(ds.images).argmax(1) == ds.labels).float().mean().item()
    assert acc >= 0.93


def test_tampered_weights_are_refused(tmp_path, monkeypatch):
    bad = tmp_path / "teaching_model.safetensors"
    data = bytearray(models.TEACHING_WEIGHTS.read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(models, "TEACHING_WEIGHTS", bad)
    with pytest.raises(WeightsHashError, match=r"teaching_model\.safetensors"):
        models.teaching_model()


def test_untrained_teaching_model():
    m = models.teaching_model(pretrained=False)
    assert not m.training and m(torch.rand(1, 3, 64, 64)).shape == (1, 6)


def test_fold_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    m = models.TeachingCNN(batchnorm=True)
    for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 1.5)
        nn.init.uniform_(bn.bias, -0.2, 0.2)
    m.eval()
    plain = models.fold_batchnorm(m)
    assert not any(isinstance(b, nn.BatchNorm2d) for b in plain.modules())
    x = torch.rand(3, 3, 64, 64)
    torch.testing.assert_close(plain(x), m(x), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# torchvision models: a fake cache under a temporary TORCH_HOME
# ------------------------------------------------------------------------------------------

SMALL = "squeezenet1_1"  # 5 MB: a cheap stand-in for the official file
SMALL_FILE = "squeezenet1_1-b8a52dc0.pth"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("DECONVLAB_OFFLINE", raising=False)
    return tmp_path


def _fake_official_file(torch_home) -> str:
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.get_model(SMALL, weights=None).state_dict()
    path = torch_home / "hub" / "checkpoints" / SMALL_FILE
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cache_dir_follows_torch_home(torch_home):
    assert models.cache_dir() == torch_home / "hub" / "checkpoints"


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "squeezenet1_1"])
def test_recorded_hash_comes_from_the_official_name(name):
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    prefix = models.recorded_sha256(url.rsplit("/", 1)[1])
    assert len(prefix) >= 8 and url.endswith(f"-{prefix}.pth")


def test_cached_file_with_wrong_hash_is_refused(torch_home):
    _fake_official_file(torch_home)
    with pytest.raises(WeightsHashError, match=SMALL_FILE):
        models.torchvision_model(SMALL, download=False)


def test_cached_file_with_recorded_hash_loads(torch_home, monkeypatch):
    digest = _fake_official_file(torch_home)
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8])
    loaded = models.torchvision_model(SMALL, download=False)
    model, preprocess, categories, _weights = loaded
    assert not model.training and len(categories) == 1000 and categories[281] == "tabby"
    expected = torch.load(torch_home / "hub/checkpoints" / SMALL_FILE, weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    from deconvlab.data import _load_photo

    x = preprocess(torch.from_numpy(_load_photo("chelsea")).permute(2, 0, 1)).unsqueeze(0)
    assert x.shape == (1, 3, 224, 224) and model(x).shape == (1, 1000)


def test_missing_file_offline_fails_fast_and_says_where(torch_home, monkeypatch):
    monkeypatch.setenv("DECONVLAB_OFFLINE", "1")
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        models.torchvision_model("resnet18")
    assert time.perf_counter() - t < 5
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg
    assert str(torch_home / "hub" / "checkpoints") in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_missing_file_with_download_disabled(torch_home):
    with pytest.raises(WeightsUnavailableError, match=r"alexnet-owt-7be5be79\.pth"):
        models.torchvision_model("alexnet", download=False)


def test_failed_download_is_reported_and_changes_no_socket_setting(torch_home, monkeypatch):
    def refuse(url, timeout=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr(models, "_reachable", lambda url, timeout: True)
    monkeypatch.setattr(models, "urlopen", refuse)
    before = socket.getdefaulttimeout()
    with pytest.raises(WeightsUnavailableError, match="download failed: network is unreachable"):
        models.torchvision_model("resnet18", download=True)
    assert socket.getdefaulttimeout() == before
    assert not any((torch_home / "hub" / "checkpoints").iterdir()), "no partial file is left"


def _serve(data: bytes, seen: list):
    """A stand-in for urllib's urlopen serving ``data``; records each call's timeout."""

    def fake_urlopen(url, timeout=None):
        seen.append((url, timeout, socket.getdefaulttimeout()))
        return io.BytesIO(data)

    return fake_urlopen


def test_download_uses_a_per_request_timeout_and_is_checked(torch_home, monkeypatch):
    digest = _fake_official_file(torch_home)
    path = torch_home / "hub" / "checkpoints" / SMALL_FILE
    data = path.read_bytes()
    path.unlink()
    seen: list = []
    monkeypatch.setattr(models, "_reachable", lambda url, timeout: True)
    monkeypatch.setattr(models, "urlopen", _serve(data, seen))
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8])
    before = socket.getdefaulttimeout()
    models.torchvision_model(SMALL, download=True, timeout=3.0)
    assert [(timeout, default) for _url, timeout, default in seen] == [(3.0, before)]
    assert seen[0][0].endswith(SMALL_FILE) and path.read_bytes() == data
    assert socket.getdefaulttimeout() == before


def test_download_with_the_wrong_hash_is_not_cached(torch_home, monkeypatch):
    monkeypatch.setattr(models, "_reachable", lambda url, timeout: True)
    monkeypatch.setattr(models, "urlopen", _serve(b"not the official file", []))
    with pytest.raises(WeightsHashError, match="nothing was written"):
        models.torchvision_model(SMALL, download=True)
    assert not any((torch_home / "hub" / "checkpoints").iterdir())


def test_unreachable_network_never_hangs(torch_home, monkeypatch):
    monkeypatch.setattr(models, "_reachable", lambda url, timeout: False)
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="unreachable"):
        models.torchvision_model("vgg16", download=True)
    assert time.perf_counter() - t < 5


def test_reachability_probe_is_bounded():
    t = time.perf_counter()
    models._reachable("https://deconvlab.invalid/x.pth", timeout=1.0)
    assert time.perf_counter() - t < 3


def test_untrained_torchvision_model():
    model, _preprocess, categories, weights = models.torchvision_model(SMALL, weights=None)
    assert weights is None and not model.training and len(categories) == 1000
    assert model(torch.rand(1, 3, 96, 96)).shape == (1, 1000)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet19'"):
        models.torchvision_model("resnet19")
    with pytest.raises(ValueError, match="unknown weights 'IMAGENET9K'"):
        models.torchvision_model("resnet18", weights="IMAGENET9K")


def test_loading_without_torchvision_internal_loader(torch_home, monkeypatch):
    """If torchvision stops exposing its loader, the checked state dict is loaded directly."""
    from torchvision.models import _api

    digest = _fake_official_file(torch_home)
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8])
    monkeypatch.delattr(_api, "load_state_dict_from_url")
    model, *_ = models.torchvision_model(SMALL, download=False)
    expected = torch.load(torch_home / "hub/checkpoints" / SMALL_FILE, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())


def test_file_changed_after_a_verified_load_is_refused(torch_home, monkeypatch):
    """The hash is of the bytes loaded: a file altered in place (size and mtime kept) is caught."""
    digest = _fake_official_file(torch_home)
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8])
    models.torchvision_model(SMALL, download=False)
    path = torch_home / "hub" / "checkpoints" / SMALL_FILE
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside the tensor data
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(WeightsHashError, match=SMALL_FILE):
        models.torchvision_model(SMALL, download=False)


def test_other_threads_loading_torchvision_weights_are_unaffected(torch_home, monkeypatch):
    """torchvision_model patches nothing: torchvision's own loading in another thread still works."""
    import torchvision

    digest = _fake_official_file(torch_home)
    other = torchvision.models.SqueezeNet1_0_Weights.DEFAULT
    torch.save(
        torchvision.models.squeezenet1_0().state_dict(),
        torch_home / "hub" / "checkpoints" / os.path.basename(other.url),
    )
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8])
    errors: list[BaseException] = []

    def load_with_torchvision():
        for _ in range(60):
            try:
                torchvision.models.squeezenet1_0(weights=other, progress=False)
            except Exception as e:
                errors.append(e)

    before = socket.getdefaulttimeout()
    thread = threading.Thread(target=load_with_torchvision)
    thread.start()
    try:
        for _ in range(60):
            models.torchvision_model(SMALL, download=False)
    finally:
        thread.join()
    assert not errors, f"{len(errors)} of 60 failed, e.g. {errors[0]!r}"
    assert socket.getdefaulttimeout() == before


# The architecture is built with weights=None and the arguments torchvision's builder sets for the
# weights; a fake cache of random weights shows it equals what torchvision's builder makes.


def _random_state(name: str, **kwargs) -> dict:
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.get_model(name, weights=None, **kwargs).state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.copy_(torch.randn_like(value) * 0.05 + (value.abs() if value.ndim == 1 else 0))
    return state


def _old_densenet_keys(state: dict) -> dict:
    """Rename keys as in torchvision's official densenet files (``norm.1`` for ``norm1``)."""
    import re

    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$"
    )
    return {pattern.sub(r"\1.\2.\3", k): v for k, v in state.items()}


ARCHITECTURES = {  # name: (arguments making the official file's architecture, input size)
    "resnet18": ({}, 32),
    "mobilenet_v3_small": ({}, 32),
    "squeezenet1_1": ({}, 48),
    "googlenet": ({"aux_logits": True, "init_weights": False}, 32),
    "inception_v3": ({"aux_logits": True, "init_weights": False}, 75),
    "densenet121": ({}, 32),
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_model_equals_what_torchvisions_builder_makes(name, torch_home, monkeypatch):
    import torchvision

    kwargs, size = ARCHITECTURES[name]
    weights = torchvision.models.get_model_weights(name).DEFAULT
    state = _random_state(name, **kwargs)
    if name.startswith("densenet"):
        state = _old_densenet_keys(state)
    path = torch_home / "hub" / "checkpoints" / os.path.basename(weights.url)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    monkeypatch.setattr(models, "recorded_sha256", lambda _: hashlib.sha256(path.read_bytes()).hexdigest())
    ours = models.torchvision_model(name, download=False).model
    theirs = torchvision.models.get_model(name, weights=weights).eval()  # reads the same cached file
    assert type(ours) is type(theirs) and str(ours) == str(theirs)
    assert _settings(ours) == _settings(theirs)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in theirs_state)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def _settings(model: nn.Module) -> dict:
    """Every module's plain attributes (``transform_input``, ``aux_logits``, ``training``, ...)."""
    return {
        (name, key): value
        for name, module in model.named_modules()
        for key, value in vars(module).items()
        if not key.startswith("_") and not callable(value)
    }


def test_every_torchvision_classifier_has_a_build_plan():
    """Each builder's treatment of its weights is read without meeting an unknown statement."""
    import torchvision

    for name in torchvision.models.list_models(module=torchvision.models):
        builder = torchvision.models.get_model_builder(name)
        for weights in torchvision.models.get_model_weights(name):
            plan = models._build_plan(builder, weights)
            if weights.meta.get("categories"):
                assert plan.kwargs.get("num_classes") == len(weights.meta["categories"]), name


def _builder_with_an_unknown_step(weights=None, progress=True, **kwargs):
    if weights is not None:
        kwargs["num_classes"] = len(weights.meta["categories"])
        kwargs.update(torch.load(weights.url))  # something deconvlab does not reproduce
    return nn.Linear(2, kwargs.get("num_classes", 2))


def test_a_builder_step_that_is_not_understood_fails_loudly():
    import torchvision

    with pytest.raises(models._Unknown, match=r"kwargs\.update"):
        models._build_plan(_builder_with_an_unknown_step, torchvision.models.ResNet18_Weights.DEFAULT)


def test_weights_without_classes_are_refused():
    with pytest.raises(ValueError, match=r"IMAGENET1K_FEATURES have no classes.*IMAGENET1K_V1"):
        models.torchvision_model("vgg16", weights="IMAGENET1K_FEATURES")


def test_evaluate_restores_each_modules_mode():
    """deconvlab.train.evaluate runs in eval mode and gives back a frozen BatchNorm as it was."""
    from deconvlab import train

    torch.manual_seed(0)
    model = models.TeachingCNN(batchnorm=True).train()
    frozen = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d)).eval()
    modes = [m.training for m in model.modules()]
    stats = frozen.running_mean.clone()
    train.evaluate(model, n=8)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(frozen.running_mean, stats)
