"""Where the notebooks run: Binder and Colab recognised from the environment, the photo sections'
network (trained where the network is there, untrained and said so elsewhere), torch's thread count.

Nothing here touches the network: the weights cache is a temporary TORCH_HOME holding a fake
file whose hash the test records, a "download" is served from memory, and every test that must
stay offline fails if urllib, a socket or torch.hub is asked to connect.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import socket
import sys
import types
import urllib.request

import pytest
import torch

from deconvlab import models, runtime
from deconvlab.models import WeightsHashError, photo_model
from deconvlab.runtime import BINDER_VARIABLES, COLAB_VARIABLES, hosted_environment, set_notebook_threads

SMALL = "squeezenet1_1"  # 5 MB: a cheap stand-in for ResNet-18's 45 MB
SMALL_FILE = "squeezenet1_1-b8a52dc0.pth"


@pytest.fixture
def plain_machine(tmp_path, monkeypatch):
    """No Binder or Colab, no deconvlab variables, an empty weights cache under ``tmp_path``."""
    for name in (*BINDER_VARIABLES, *COLAB_VARIABLES, "DECONVLAB_DOWNLOAD", "DECONVLAB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(runtime, "_colab_importable", lambda: False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything tries to reach the network."""
    # torchvision binds torch.hub's functions by name when first imported: import it before they are
    # replaced, or it keeps the stand-in for the rest of the session (and later tests fail in it).
    import torchvision.models  # noqa: F401

    def refuse(*args, **kwargs):
        pytest.fail(f"the network was touched: {args[:2]}")

    for owner, name in [
        (models, "_reachable"),
        (models, "_download"),
        (models, "urlopen"),
        (urllib.request, "urlopen"),
        (socket, "create_connection"),
        (socket.socket, "connect"),
        (torch.hub, "download_url_to_file"),
        (torch.hub, "load_state_dict_from_url"),
    ]:
        monkeypatch.setattr(owner, name, refuse)


def _fake_weights(monkeypatch) -> tuple[bytes, dict]:
    """Bytes of a seeded random squeezenet1_1 state dict, recorded as the official file's hash."""
    import torchvision

    torch.manual_seed(1)
    state = torchvision.models.get_model(SMALL, weights=None).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(models, "recorded_sha256", lambda name: digest[:8] if name == SMALL_FILE else "0" * 8)
    return data, state


def _serve(monkeypatch, data: bytes, reachable: bool = True) -> list[str]:
    """Stand-ins for the download: the probe says ``reachable``, urlopen serves ``data``."""
    urls: list[str] = []

    def fake_urlopen(url, timeout=None):
        urls.append(url)
        return io.BytesIO(data)

    monkeypatch.setattr(models, "_reachable", lambda url, timeout: reachable)
    monkeypatch.setattr(models, "urlopen", fake_urlopen)
    return urls


def _same_weights(model, state) -> bool:
    return all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


# --------------------------------------------------------------------------------------------
# hosted_environment
# --------------------------------------------------------------------------------------------


def test_a_plain_machine_is_not_hosted(plain_machine, monkeypatch):
    assert hosted_environment() is None
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/someone/")  # any JupyterHub, not Binder
    assert hosted_environment() is None


@pytest.mark.parametrize("name", BINDER_VARIABLES)
def test_binder_is_recognised_by_its_variables(plain_machine, monkeypatch, name):
    monkeypatch.setenv(name, "https://mybinder.org/")
    assert hosted_environment() == "binder"


@pytest.mark.parametrize("name", COLAB_VARIABLES)
def test_colab_is_recognised_by_its_variables(plain_machine, monkeypatch, name):
    monkeypatch.setenv(name, "")
    assert hosted_environment() == "colab"


def test_colab_is_recognised_by_its_module(monkeypatch):
    for name in (*BINDER_VARIABLES, *COLAB_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert hosted_environment() == "colab"


def test_colab_module_is_looked_up_without_importing_it(monkeypatch):
    looked_up = []

    def find_spec(name, *args):
        looked_up.append(name)
        if name == "google.colab" and colab_installed:
            return object()
        raise ModuleNotFoundError("No module named 'google'")

    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    colab_installed = True
    assert runtime._colab_importable()
    colab_installed = False
    assert not runtime._colab_importable()
    assert looked_up == ["google.colab", "google.colab"] and "google.colab" not in sys.modules


# --------------------------------------------------------------------------------------------
# photo_model: the offline branch
# --------------------------------------------------------------------------------------------


def test_offline_elsewhere_and_says_so(plain_machine, no_network):
    photo = photo_model()
    model, _preprocess, categories, weights, message = photo
    assert weights is None and not photo.trained and not model.training and len(categories) == 1000
    assert message.startswith("Maps from an UNTRAINED resnet18 (random weights, seed 0")
    for part in (
        "not Binder or Colab",
        "DECONVLAB_DOWNLOAD=1",
        "45 MB",
        "resnet18-f37072fd.pth",
        str(plain_machine),
    ):
        assert part in message, part
    assert "\n" not in message


def test_cached_weights_are_used_offline(plain_machine, no_network, monkeypatch):
    data, state = _fake_weights(monkeypatch)
    plain_machine.mkdir(parents=True)
    (plain_machine / SMALL_FILE).write_bytes(data)
    photo = photo_model(SMALL)
    assert photo.trained and _same_weights(photo.model, state)
    assert "trained on ImageNet (IMAGENET1K_V1" in photo.message
    assert "found in torchvision's cache" in photo.message


@pytest.mark.parametrize(
    ("name", "value"),
    [("DECONVLAB_DOWNLOAD", "0"), ("DECONVLAB_DOWNLOAD", "no"), ("DECONVLAB_OFFLINE", "1")],
)
def test_variables_keep_binder_offline(plain_machine, no_network, monkeypatch, name, value):
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    monkeypatch.setenv(name, value)
    photo = photo_model(SMALL)
    assert not photo.trained and f"{name}" in photo.message


def test_the_argument_beats_binder_and_the_variable(plain_machine, no_network, monkeypatch):
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    monkeypatch.setenv("DECONVLAB_DOWNLOAD", "1")
    photo = photo_model(SMALL, download=False)
    assert not photo.trained and "download=False was passed" in photo.message


def test_untrained_network_is_seeded_and_leaves_torchs_rng_alone(plain_machine, no_network):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = photo_model(SMALL, seed=5).model
    assert torch.equal(torch.rand(3), expected_next)
    again, other = photo_model(SMALL, seed=5).model, photo_model(SMALL, seed=6).model
    assert _same_weights(again, first.state_dict())
    assert not _same_weights(other, first.state_dict())


# --------------------------------------------------------------------------------------------
# photo_model: the hosted branch (downloads, served from memory)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "variable"), [("Binder", "BINDER_REQUEST"), ("Colab", "COLAB_RELEASE_TAG"), ("Colab", None)]
)
def test_binder_and_colab_download_the_trained_network(plain_machine, monkeypatch, host, variable):
    data, state = _fake_weights(monkeypatch)
    urls = _serve(monkeypatch, data)
    if variable:
        monkeypatch.setenv(variable, "v2/gh/deconvlab/deconvlab/main")
    else:
        monkeypatch.setattr(runtime, "_colab_importable", lambda: True)
    photo = photo_model(SMALL)
    assert photo.trained and _same_weights(photo.model, state)
    assert urls == [f"https://download.pytorch.org/models/{SMALL_FILE}"]
    assert (plain_machine / SMALL_FILE).read_bytes() == data
    assert f"downloaded to {plain_machine}, as this is {host}" in photo.message


def test_the_variable_allows_a_download_anywhere(plain_machine, monkeypatch):
    data, _ = _fake_weights(monkeypatch)
    urls = _serve(monkeypatch, data)
    monkeypatch.setenv("DECONVLAB_DOWNLOAD", "1")
    photo = photo_model(SMALL)
    assert photo.trained and len(urls) == 1 and "DECONVLAB_DOWNLOAD=1 is set" in photo.message


def test_a_failed_download_falls_back_and_says_why(plain_machine, monkeypatch):
    data, _ = _fake_weights(monkeypatch)
    urls = _serve(monkeypatch, data, reachable=False)
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    photo = photo_model(SMALL)
    assert not photo.trained and urls == []
    assert "downloading its ImageNet weights failed" in photo.message and "unreachable" in photo.message
    assert not plain_machine.exists() or not any(plain_machine.iterdir())


def test_a_download_that_is_not_the_official_file_is_an_error(plain_machine, monkeypatch):
    _fake_weights(monkeypatch)
    _serve(monkeypatch, b"not the official file")
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")
    with pytest.raises(WeightsHashError, match="nothing was written"):
        photo_model(SMALL)


def test_bad_choices_are_named(plain_machine, no_network, monkeypatch):
    with pytest.raises(TypeError, match="download"):
        photo_model(SMALL, download="yes")
    with pytest.raises(ValueError, match="unknown torchvision model"):
        photo_model("resnet1800")
    monkeypatch.setenv("DECONVLAB_DOWNLOAD", "maybe")
    with pytest.raises(ValueError, match="DECONVLAB_DOWNLOAD must be 1"):
        photo_model(SMALL)


# --------------------------------------------------------------------------------------------
# set_notebook_threads
# --------------------------------------------------------------------------------------------


@pytest.fixture
def threads_restored(monkeypatch):
    monkeypatch.delenv("DECONVLAB_THREADS", raising=False)
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_notebook_threads_default_and_overrides(threads_restored, monkeypatch):
    assert set_notebook_threads() == runtime.NOTEBOOK_THREADS == torch.get_num_threads()
    assert set_notebook_threads(2) == 2 == torch.get_num_threads()
    monkeypatch.setenv("DECONVLAB_THREADS", "2")
    torch.set_num_threads(1)
    assert set_notebook_threads() == 2


def test_bad_thread_counts_are_named(threads_restored, monkeypatch):
    with pytest.raises(ValueError, match="threads"):
        set_notebook_threads(0)
    monkeypatch.setenv("DECONVLAB_THREADS", "two")
    with pytest.raises(ValueError, match="DECONVLAB_THREADS"):
        set_notebook_threads()
