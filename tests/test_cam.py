"""Grad-CAM and Guided Grad-CAM: equal to Captum where Captum is right, to a reference written here
with plain autograd on ResNet18 (a ReLU module reused, in-place ReLUs on skip paths), one forward
pass for both factors, and errors that name the problem."""

import captum.attr as captum_attr
import pytest
import torch
import torch.nn.functional as F
import torchvision
from small_nets import small_cnn
from torch import nn

import deconvlab as dl

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations"),
]


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal to float tolerance, relative to the map's scale (the maps are tiny on random nets)."""
    scale = float(theirs.detach().abs().max())
    assert scale > 0, "a map of zeros compares nothing"
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


@pytest.fixture(scope="module")
def vgg11() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.vgg11(weights=None).eval()


@pytest.fixture(scope="module")
def vgg_images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 64, 64)


def captum_grad_cam(model, x, target, layer, relu=True, mode="bilinear"):
    cam = captum_attr.LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=relu)
    return cam if mode is None else captum_attr.LayerAttribution.interpolate(cam, x.shape[2:], mode)


# ----------------------------------------------------------------------------------------------
# against Captum (VGG11 and a small sequential CNN: nn.ReLU modules, each used once)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["features.18", "features.13"])  # the last conv (4x4), one before (8x8)
@pytest.mark.parametrize("mode", ["bilinear", "nearest", None])
def test_grad_cam_equals_captum_on_vgg11(vgg11, vgg_images, path, mode):
    layer = vgg11.get_submodule(path)  # followed by an in-place ReLU: A is the conv's own output
    theirs = captum_grad_cam(vgg11, vgg_images, [3, 7], layer, mode=mode)
    ours = dl.grad_cam(vgg11, vgg_images, [3, 7], path, upsample=mode)
    assert ours.shape == theirs.shape == ((2, 1, 64, 64) if mode else (2, 1, *theirs.shape[2:]))
    assert_close(ours, theirs)


def test_grad_cam_without_relu_equals_captums_signed_map(vgg11, vgg_images):
    theirs = captum_grad_cam(vgg11, vgg_images, 5, vgg11.features[18], relu=False, mode=None)
    ours = dl.grad_cam(vgg11, vgg_images, 5, vgg11.features[18], relu=False, upsample=None)
    assert (theirs < 0).any()  # the ReLU matters here
    assert_close(ours, theirs)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_guided_grad_cam_equals_captum_on_vgg11(vgg11, vgg_images, mode):
    theirs = captum_attr.GuidedGradCam(vgg11, vgg11.features[18]).attribute(
        vgg_images, target=[3, 7], interpolate_mode=mode
    )
    ours = dl.guided_grad_cam(vgg11, vgg_images, [3, 7], "features.18", upsample=mode)
    assert ours.shape == vgg_images.shape
    assert_close(ours, theirs)


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("mode", ["bilinear", "nearest", "bicubic"])
def test_both_equal_captum_on_a_small_cnn(images, inplace, mode):
    model = small_cnn(inplace=inplace)
    for index in (0, 3):  # the first conv (16x16) and the second (8x8)
        layer = model[index]
        theirs = captum_grad_cam(model, images, [1, 4], layer, mode=mode)
        assert_close(dl.grad_cam(model, images, [1, 4], layer, upsample=mode), theirs)
        guided = captum_attr.GuidedGradCam(model, layer).attribute(
            images, target=[1, 4], interpolate_mode=mode
        )
        assert_close(dl.guided_grad_cam(model, images, [1, 4], layer, upsample=mode), guided)


# ----------------------------------------------------------------------------------------------
# ResNet18, where Captum's guided backprop is wrong: a reference with plain autograd
# ----------------------------------------------------------------------------------------------


def reference_grad_cam(model, x, target, layer, mode="bilinear"):
    """Grad-CAM from the paper, with a forward hook and torch.autograd.grad."""
    kept = {}

    def keep(module, args, output):
        kept["A"] = output
        return output.clone()  # the model goes on with a copy: an in-place ReLU overwrites the copy

    handle = layer.register_forward_hook(keep)
    try:
        score = model(x.clone())[torch.arange(len(x)), target].sum()  # A requires grad through the weights
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(score, kept["A"])
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * kept["A"]).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)


def reference_guided_backprop(model, x, target):
    """Guided backprop: a hook on every ReLU call's output gates the signal, p -> p * [p > 0];
    autograd's own ReLU backward then applies [x > 0]. One hook per call, so a module used twice
    and in-place ReLUs are handled (Captum's module backward hooks are not)."""

    def gate(module, args, output):
        output.register_hook(lambda p: p.clamp(min=0))

    handles = [m.register_forward_hook(gate) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        x = x.clone().requires_grad_()
        score = model(x)[torch.arange(len(x)), target].sum()
    finally:
        for handle in handles:
            handle.remove()
    (signal,) = torch.autograd.grad(score, x)
    return signal


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


def test_both_equal_a_reference_on_resnet18(resnet18):
    torch.manual_seed(2)
    x = torch.rand(2, 3, 64, 64)
    target = torch.tensor([9, 400])
    guided = reference_guided_backprop(resnet18, x, target)
    for path in ("layer4", "layer3"):  # 2x2 and 4x4 feature maps
        cam = reference_grad_cam(resnet18, x, target, resnet18.get_submodule(path))
        assert_close(dl.grad_cam(resnet18, x, target, path), cam)
        assert_close(dl.guided_grad_cam(resnet18, x, target, path), guided * cam)
    # the reference is not the plain gradient: the guided gates matter on this network
    gradient = dl.attribute(resnet18, x, target, rule="gradient")
    assert not torch.allclose(guided, gradient, atol=1e-3 * float(gradient.abs().max()))


class SkipNet(nn.Module):
    """A pre-activation feeding a ReLU and a skip path; one ReLU module used twice."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x):
        h = self.conv1(x)
        out = self.relu(h.clone()) + h
        return self.fc(self.relu(self.conv2(out)).flatten(1))


@pytest.mark.parametrize("inplace", [False, True])
def test_both_equal_a_reference_with_a_skip_path_and_a_reused_relu(inplace):
    model = SkipNet(inplace).eval()
    x, target = torch.randn(2, 3, 8, 8), torch.tensor([1, 3])
    for path in ("conv1", "conv2"):  # conv2 is followed by an in-place ReLU: A is its own output
        cam = reference_grad_cam(model, x, target, model.get_submodule(path))
        assert_close(dl.grad_cam(model, x, target, path), cam)
        guided = reference_guided_backprop(model, x, target)
        assert_close(dl.guided_grad_cam(model, x, target, path), guided * cam)


# ----------------------------------------------------------------------------------------------
# one forward pass; the model left as found
# ----------------------------------------------------------------------------------------------


def count_forward_passes(model):
    calls = []
    return calls, model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))


def test_guided_grad_cam_runs_the_model_once(vgg11, vgg_images):
    calls, handle = count_forward_passes(vgg11)
    try:
        dl.guided_grad_cam(vgg11, vgg_images, 1, "features.18")
        assert calls == [2]
        dl.grad_cam(vgg11, vgg_images, 1, "features.18")
        assert calls == [2, 2]
    finally:
        handle.remove()


def test_the_model_is_left_as_found(images):
    model = small_cnn().train()
    for call in (dl.grad_cam, dl.guided_grad_cam):
        call(model, images, 2, "3")
        with pytest.raises(ValueError, match="spatial"):
            call(model, images, 2, "7")  # the linear layer: refused after the forward pass
        assert model.training and all(module.training for module in model.modules())
        for module in model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
            assert all(p.grad is None for p in module.parameters())


def test_grad_cam_is_the_gradient_whatever_rule_is_active(images):
    model = small_cnn()
    expected = dl.grad_cam(model, images, 2, "3")
    with dl.backward_rule("deconvnet"):
        assert torch.equal(dl.grad_cam(model, images, 2, "3"), expected)


class ReLUsItsInputLater(nn.Module):
    """Runs the probed conv first, then ReLUs its input in place: the pipeline reruns the pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8 + 3 * 8 * 8, 5)

    def forward(self, x):
        a = F.relu(self.conv(x + 0))  # nothing saves x itself for the backward pass
        return self.head(torch.cat([a.flatten(1), torch.relu_(x).flatten(1)], dim=1))


def test_a_rerun_forward_pass_is_probed_once():
    model = ReLUsItsInputLater()
    x = torch.randn(2, 3, 8, 8)
    expected = reference_grad_cam(model, x, torch.tensor([1, 1]), model.conv)
    assert_close(dl.grad_cam(model, x, 1, "conv"), expected)
    guided = dl.attribute(model, x, 1, rule="guided_backprop")  # functional ReLUs: the library's own
    assert_close(dl.guided_grad_cam(model, x, 1, "conv"), guided * expected)


# ----------------------------------------------------------------------------------------------
# bad input: each error names the problem
# ----------------------------------------------------------------------------------------------


class Conv1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 3, 3)
        self.fc = nn.Linear(3 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class FlatInput(nn.Module):
    """Takes flat vectors (N, 64) and reshapes them to images inside."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x.view(-1, 1, 8, 8))).flatten(1))


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.spare = nn.Conv2d(3, 2, 3)
        self.shared = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        return self.shared(self.shared(torch.relu(self.conv(x)))).mean(dim=(2, 3))


@pytest.mark.parametrize("call", [dl.grad_cam, dl.guided_grad_cam])
def test_bad_layers_are_named(call, images):
    model = small_cnn()
    with pytest.raises(TypeError, match=r"layer is None.*layer='3' \(the last convolution\)"):
        call(model, images, 1, None)
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        call(model, images, 1, "conv9")
    with pytest.raises(TypeError, match="layer must be a module path"):
        call(model, images, 1, 3)
    with pytest.raises(ValueError, match=r"layer '7'.*shape \(2, 5\), without spatial dimensions"):
        call(model, images, 1, "7")
    x = torch.randn(2, 3, 10, 10)
    with pytest.raises(RuntimeError, match="layer 'spare' did not run"):
        call(Unused(), x, 1, "spare")
    with pytest.raises(RuntimeError, match="layer 'shared' ran 2 times"):
        call(Unused(), x, 1, "shared")


def test_bad_upsampling_is_named(images):
    model = small_cnn()
    with pytest.raises(ValueError, match="upsample must be one of"):
        dl.grad_cam(model, images, 1, "3", upsample="cubic")
    with pytest.raises(TypeError, match="upsample must be one of"):
        dl.grad_cam(model, images, 1, "3", upsample=2)
    with pytest.raises(TypeError, match=r"upsample must be one of .* got None"):
        dl.guided_grad_cam(model, images, 1, "3", upsample=None)
    with pytest.raises(TypeError, match="relu must be True or False"):
        dl.grad_cam(model, images, 1, "3", relu="yes")
    signal = torch.randn(2, 2, 8)
    with pytest.raises(ValueError, match=r"upsample='bilinear' needs .* 2 spatial .* has 1.*use 'linear'"):
        dl.grad_cam(Conv1d(), signal, 1, "conv")
    assert dl.grad_cam(Conv1d(), signal, 1, "conv", upsample="linear").shape == (2, 1, 8)
    flat = torch.randn(2, 64)
    with pytest.raises(ValueError, match=r"x has shape \(2, 64\).*do not correspond.*upsample=None"):
        dl.grad_cam(FlatInput(), flat, 1, "conv")
    assert dl.grad_cam(FlatInput(), flat, 1, "conv", upsample=None).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("call", [dl.grad_cam, dl.guided_grad_cam])
def test_bad_models_inputs_and_targets_are_named_as_attribute_does(call, images):
    model = small_cnn()
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        call(lambda x: x, images, 1, "3")
    with pytest.raises(TypeError, match=r"x has dtype torch.int64"):
        call(model, images.long(), 1, "3")
    with pytest.raises(TypeError, match="target is None"):
        call(model, images, None, "3")
    with pytest.raises(IndexError, match="target 9 is out of range"):
        call(model, images, 9, "3")


class LooksCompiled(nn.Module):
    """What torch.compile returns, as far as deconvlab looks: the module under ``_orig_mod``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def forward(self, x):
        return self._orig_mod(x)


def test_a_compiled_model_takes_its_modules_paths(images):
    model = small_cnn()
    expected = dl.guided_grad_cam(model, images, 1, "3")
    assert torch.equal(dl.guided_grad_cam(LooksCompiled(model), images, 1, "3"), expected)
    with pytest.raises(TypeError, match=r"layer='3' \(the last convolution\)"):
        dl.grad_cam(LooksCompiled(model), images, 1, None)
