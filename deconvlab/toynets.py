r"""Small networks whose backward passes can be followed by hand.

Each network isolates one fact about the backward rules
:math:`\operatorname{ReLU}^*(x, p)` (see :mod:`deconvlab.rules`):

* :func:`tiny_network` on :func:`tiny_input`: a 4×4 image, one 3×3 convolution,
  ReLU, a linear layer, ReLU. Eight hidden units, small integers: the three maps
  of gradient ``p·[x>0]``, DeConvNet ``p·[p>0]`` and guided backprop
  ``p·[x>0]·[p>0]`` can be predicted with pencil and paper.
* :func:`relu_free_network`: convolutions and max-pooling but no ReLU. The rules
  change only the backward of ReLU, so here all three give the same map.
* :func:`no_pool_network`: ReLUs but no max-pooling. DeConvNet ignores ``x`` at
  every ReLU and every other layer's backward is a fixed linear map, so its map
  does not depend on the input at all (Zeiler and Fergus' switches are what make
  it input-dependent; see also Mahendran and Vedaldi, ECCV 2016).

:func:`relu_inputs` records what each ``nn.ReLU`` receives, for the hand tables.

References
----------
.. [DECONV] Zeiler and Fergus, *Visualizing and Understanding Convolutional
   Networks*, ECCV 2014, https://doi.org/10.1007/978-3-319-10590-1_53.
.. [SALIENT] Mahendran and Vedaldi, *Salient Deconvolutional Networks*,
   ECCV 2016, https://doi.org/10.1007/978-3-319-46466-4_8.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn

from .checks import bias_of

__all__ = [
    "TINY_BIASES",
    "TINY_LINEAR_WEIGHTS",
    "no_pool_network",
    "relu_free_network",
    "relu_inputs",
    "tiny_input",
    "tiny_network",
]

#: Biases of the tiny network's two convolution channels.
TINY_BIASES: tuple[float, float] = (-50.0, -75.0)

#: Weights of the tiny network's linear layer, in the order of ``Flatten``:
#: channel 0's four positions (row by row), then channel 1's.
TINY_LINEAR_WEIGHTS: tuple[float, ...] = (1, 1, 1, 1, 1, -1, -1, -1)


def tiny_input() -> Tensor:
    """The 4×4 image ``arange(16)``, shaped ``(1, 1, 4, 4)``, float32."""
    return torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)


def tiny_network(
    linear_weights: Sequence[float] = TINY_LINEAR_WEIGHTS,
    biases: Sequence[float] = TINY_BIASES,
) -> nn.Sequential:
    """A network small enough to backpropagate by hand.

    ``conv``: Conv2d(1→2, 3×3, no padding), all weights 1, biases ``biases``;
    ``relu1``; ``flatten`` (channel 0's 2×2 outputs row by row, then channel 1's);
    ``fc``: Linear(8→1, no bias) with weights ``linear_weights``; ``relu2``.
    The output has shape ``(1, 1)``: a single unit, target 0.

    Parameters
    ----------
    linear_weights : sequence of 8 floats
        Weights of ``fc``; by default five +1 then three −1.
    biases : sequence of 2 floats
        Biases of the two convolution channels.
    """
    if len(linear_weights) != 8 or len(biases) != 2:
        raise ValueError("tiny_network needs 8 linear weights and 2 biases")
    conv = nn.Conv2d(1, 2, 3)
    fc = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        bias_of(conv).copy_(torch.tensor(biases, dtype=torch.float32))
        fc.weight.copy_(torch.tensor(linear_weights, dtype=torch.float32).view(1, 8))
    layers = [
        ("conv", conv),
        ("relu1", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc", fc),
        ("relu2", nn.ReLU()),
    ]
    return nn.Sequential(OrderedDict(layers)).eval()


_Model = TypeVar("_Model", bound=nn.Module)


def _seeded(model: _Model, seed: int) -> _Model:
    """Re-initialise ``model``'s layers from a fixed seed (He init), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=generator)
                bias_of(module).uniform_(-0.1, 0.1, generator=generator)
    return model.eval()


def relu_free_network(seed: int = 0, num_classes: int = 6) -> nn.Sequential:
    """Conv → max-pool → conv → max-pool → average → linear, for 3-channel images; no ReLU.

    No ReLU means nothing for a rule to change: gradient, DeConvNet and guided
    backprop return the same signal (max-pooling still unpools through its
    switches, identically for all three).
    """
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )
    return _seeded(model, seed)


def no_pool_network(seed: int = 0, num_classes: int = 6) -> nn.Sequential:
    """A ReLU CNN for 3-channel images that downsamples by strided convolutions, not max-pooling.

    Under DeConvNet, ``ReLU*(x, p) = p·[p>0]`` ignores ``x``, and the backward of
    a convolution, of average pooling and of a linear layer does not depend on
    the input either; so DeConvNet's map is the same for every input.
    """
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
    return _seeded(model, seed)


@torch.no_grad()
def relu_inputs(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The input ``x`` of every ``nn.ReLU`` module during ``model(x)``, by module path.

    Copies are taken before the ReLU runs, so in-place ReLUs are recorded correctly.
    A ReLU module used several times keeps its last input.
    """
    recorded: dict[str, Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):

            def record(module, args, name=name):
                recorded[name] = args[0].detach().clone()

            handles.append(module.register_forward_pre_hook(record))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return recorded
