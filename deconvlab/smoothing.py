r"""SmoothGrad over any backward rule: the map averaged over noisy copies of the input.

SmoothGrad [SMOOTHGRAD]_ averages a map :math:`M` over :math:`n` copies of the input with
Gaussian noise,

.. math::

    \hat M(x) = \frac{1}{n} \sum_{s=1}^{n} M\big(x + \varepsilon_s\big), \qquad
    \varepsilon_s \sim \mathcal{N}(0, \sigma^2), \quad
    \sigma = \text{noise level} \cdot (x_{\max} - x_{\min}),

with the noise level a fraction of each example's range, as in the paper (10–20 % works
best there). SmoothGrad-Squared [ROAR]_ averages :math:`M^2` instead. :math:`M` is the
signal of any rule (:func:`deconvlab.attribute`): the gradient as in the paper, DeConvNet,
guided backpropagation or a registered rule.

The noisy copies are batched: ``samples × N`` examples go through :func:`deconvlab.attribute`
in as few calls as a memory budget allows (see :func:`smoothgrad`), not one call per sample.

References
----------
.. [SMOOTHGRAD] Smilkov, Thorat, Kim, Viégas and Wattenberg, *SmoothGrad: removing noise by adding
   noise*, ICML Workshop on Visualization for Deep Learning 2017, https://arxiv.org/abs/1706.03825.
.. [ROAR] Hooker, Erhan, Kindermans and Kim, *A Benchmark for Interpretability Methods in Deep
   Neural Networks*, NeurIPS 2019, https://arxiv.org/abs/1806.10758.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .attribution import Layer, attribute
from .checks import Target, as_bool, as_int, as_real, check_input, check_model, check_target, describe
from .escapes import check_finite_input, eager_module
from .model_state import removing
from .rules import RuleLike

__all__ = ["DEFAULT_MEMORY_BUDGET", "smoothgrad"]

#: Bytes that one batch of noisy copies may take by default (about a quarter of a Binder kernel).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: How much more than the layers' outputs one example takes in a forward and backward pass.
#: Measured (peak resident memory over the summed outputs) on torchvision's ResNet18: 1.4-1.5,
#: VGG11: 1.7-1.8, AlexNet: 2.8.
_MEMORY_FACTOR = 3.0


def noise_scale(x: Tensor, noise_level: float) -> Tensor:
    r""":math:`\sigma = \text{noise level} \cdot (x_{\max} - x_{\min})` per example, to broadcast on ``x``."""
    flat = x.detach().reshape(len(x), -1)
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    return (noise_level * spread).view(-1, *([1] * (x.dim() - 1)))


class _NoisyCopies:
    """The ``samples × N`` noisy examples, sample after sample, handed out in batches of any size.

    Sample ``s`` is ``x + σ · torch.randn(x.shape, generator=generator)``, drawn in order
    ``s = 0, 1, ...``, so a loop drawing the same way gets the same noise.
    """

    def __init__(self, x: Tensor, sigma: Tensor, samples: int, generator: torch.Generator | None) -> None:
        self.x, self.sigma, self.generator = x.detach(), sigma, generator
        self.undrawn, self.drawn = samples, 0  # samples still to draw; examples drawn, not taken
        self.pending: list[Tensor] = []

    def take(self, count: int) -> Tensor:
        """The next ``count`` noisy examples (fewer at the end)."""
        while self.drawn < count and self.undrawn:
            noise = torch.randn(
                self.x.shape, generator=self.generator, dtype=self.x.dtype, device=self.x.device
            )
            self.pending.append(self.x + self.sigma * noise)
            self.drawn, self.undrawn = self.drawn + len(self.x), self.undrawn - 1
        batch = self.pending[0] if len(self.pending) == 1 else torch.cat(self.pending)
        self.pending = [batch[count:]] if len(batch) > count else []
        self.drawn = max(0, self.drawn - count)
        return batch[:count]


def _add_to_examples(total: Tensor | None, maps: Tensor, start: int, examples: int) -> Tensor:
    """``total`` (zeros if None) plus the maps of noisy examples ``start, start + 1, ...``, each
    added to the sum of its example."""
    if total is None:
        total = maps.new_zeros((examples, *maps.shape[1:]))
    while len(maps):
        offset = start % examples
        if offset == 0 and len(maps) >= examples:  # whole samples: one sum over them
            used = len(maps) // examples * examples
            total += maps[:used].reshape(-1, *total.shape).sum(dim=0)
        else:  # part of a sample
            used = min(examples - offset, len(maps))
            total[offset : offset + used] += maps[:used]
        maps, start = maps[used:], start + used
    return total


def _per_example(target: Target, batch: int) -> bool:
    """Whether ``target`` has one entry per example (a list, an array or a tensor with a batch dimension)."""
    if isinstance(target, (Tensor, np.ndarray)):
        return target.ndim >= 1
    return isinstance(target, Sequence) and not isinstance(target, (str, tuple))


def repeat_target(target: Target, rows: Tensor, batch: int) -> Any:
    """``target`` for the noisy examples ``rows`` (copies of examples ``rows % batch``).

    A target for the whole batch (an int, a 0-d tensor, a tuple indexing the output) is kept;
    one with an entry per example (a list, a 1-D tensor, a seed tensor shaped like the output)
    is repeated for each noisy copy of its example.
    """
    if not _per_example(target, batch):
        return target
    assert isinstance(target, (Tensor, np.ndarray, Sequence))
    if len(target) != batch:
        raise ValueError(
            f"target has {len(target)} entries (shape {tuple(np.shape(target))}) but x has {batch} "
            "examples; give one entry per example, or one class for all"
        )
    examples = rows % batch
    if isinstance(target, Tensor):
        return target[examples.to(target.device)]
    if isinstance(target, np.ndarray):
        return target[examples.numpy()]
    return [target[i] for i in examples.tolist()]


@contextmanager
def _metering(model: nn.Module) -> Iterator[list[int]]:
    """Count the bytes of the outputs of ``model``'s leaf modules during the block (each storage once)."""
    model = eager_module(model)
    leaves = [module for module in model.modules() if not any(True for _ in module.children())]
    seen: dict[int, int] = {}

    def meter(module: nn.Module, args: object, output: object) -> None:
        for tensor in output if isinstance(output, (tuple, list)) else [output]:
            if isinstance(tensor, Tensor):
                storage = tensor.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()

    total = [0]
    with removing([]) as handles:
        handles.extend(map(nn.Module.register_forward_hook, leaves, [meter] * len(leaves)))
        yield total
        total[0] = sum(seen.values())


def _batch_size(measured: int, rows: int, x: Tensor, memory_budget: int) -> int:
    """Noisy examples per call: the budget over the estimated bytes of one example."""
    row_bytes = x[:1].nelement() * x.element_size()
    per_example = max(_MEMORY_FACTOR * measured / rows, 4 * row_bytes)
    return max(1, int(memory_budget // per_example))


def _check_generator(generator: object, x: Tensor) -> torch.Generator | None:
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {describe(generator)}; "
            "e.g. generator=torch.Generator().manual_seed(0)"
        )
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but x is on {x.device}; create it on x's device"
        )
    return generator


def smoothgrad(
    model: nn.Module,
    x: Tensor,
    target: Target,
    rule: RuleLike = "gradient",
    *,
    layer: Layer = None,
    samples: int = 16,
    noise_level: float = 0.15,
    squared: bool = False,
    generator: torch.Generator | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    batch_size: int | None = None,
) -> Tensor:
    r"""SmoothGrad [SMOOTHGRAD]_ of any rule: the mean map over ``samples`` noisy copies of ``x``.

    .. math::

        \hat M(x) = \frac{1}{n} \sum_{s=1}^{n} M(x + \varepsilon_s), \quad
        \varepsilon_s \sim \mathcal{N}(0, \sigma^2), \quad
        \sigma = \text{noise level} \cdot (x_{\max} - x_{\min})

    with :math:`x_{\max} - x_{\min}` each example's own range; ``squared=True`` averages
    :math:`M^2` (SmoothGrad-Squared [ROAR]_).

    Parameters
    ----------
    model, x, target
        As in :func:`deconvlab.attribute`; a per-example target (a list, a 1-D tensor, a seed
        tensor) is repeated for every noisy copy of its example.
    rule : str or Rule, default "gradient"
        The map :math:`M`: anything ``attribute``'s ``rule=`` takes. The paper smooths the gradient.
    layer : str or nn.Module, optional
        Smooth the signal at this layer's output instead of at the input (the noise is always
        added to ``x``).
    samples : int, default 16
        Noisy copies per example, at least 1.
    noise_level : float, default 0.15
        :math:`\sigma` as a fraction of each example's range, at least 0; 0 adds no noise.
    squared : bool, default False
        Average the squared maps (SmoothGrad-Squared).
    generator : torch.Generator, optional
        The noise's source, for reproducible maps; by default PyTorch's global generator.
        Sample ``s`` is ``x + σ * torch.randn(x.shape, generator=generator)``, drawn in order.
    memory_budget : int, default 256 MiB
        Bytes that one call's batch of noisy copies may take. The first call runs one copy of
        each example (``N`` examples, what ``attribute(model, x, ...)`` takes) and counts the bytes
        of every leaf module's output (each storage once); each further call then takes
        ``budget // (3 × those bytes per example)`` noisy examples, at least one (a batch may mix
        samples). An estimate: the factor 3 covers what the graph and the backward pass add
        (peak memory measured at 1.4-2.8 times the outputs on torchvision's ResNet18, VGG11 and
        AlexNet); functional layers are not counted. ``batch_size`` decides instead.
    batch_size : int, optional
        Noisy examples per call, instead of the budget's estimate.

    Returns
    -------
    Tensor
        Shaped like ``attribute``'s map for ``x`` (like ``x``, or like ``layer``'s output), detached.
        ``samples=1, noise_level=0`` gives exactly ``attribute(model, x, target, rule)``.

    Raises
    ------
    TypeError
        As :func:`deconvlab.attribute`; ``samples``, ``memory_budget`` or ``batch_size`` is no
        integer; ``noise_level`` no number; ``squared`` no bool; ``generator`` no ``torch.Generator``.
    ValueError
        As :func:`deconvlab.attribute`; ``samples``, ``memory_budget`` or ``batch_size`` below 1;
        ``noise_level`` negative, NaN or infinite; a per-example ``target`` whose length is not
        ``x``'s batch size; a ``generator`` on another device than ``x``.

    Examples
    --------
    >>> smooth = dl.smoothgrad(model, x, 3, "guided_backprop", samples=32,
    ...                         generator=torch.Generator().manual_seed(0))   # doctest: +SKIP
    """
    check_model(model)
    check_input(x)
    check_finite_input(x)
    check_target(target)
    samples = as_int("samples", samples, minimum=1)
    noise_level = as_real("noise_level", noise_level, minimum=0.0)
    squared = as_bool("squared", squared)
    memory_budget = as_int("memory_budget", memory_budget, minimum=1)
    batch_size = None if batch_size is None else as_int("batch_size", batch_size, minimum=1)
    generator = _check_generator(generator, x)
    if len(x) == 0:  # nothing to smooth: attribute's empty map
        return attribute(model, x, target, rule, layer)
    copies = _NoisyCopies(x, noise_scale(x, noise_level), samples, generator)

    def maps_of(start: int, count: int) -> Tensor:
        """The maps of noisy examples ``start, ..., start + count - 1``, in one call."""
        rows = torch.arange(start, start + count)
        maps = attribute(model, copies.take(count), repeat_target(target, rows, len(x)), rule, layer)
        return maps * maps if squared else maps

    total: Tensor | None = None
    start, end = 0, samples * len(x)
    while start < end:
        count = min(end - start, batch_size or len(x))
        with nullcontext([0]) if batch_size else _metering(model) as measured:
            maps = maps_of(start, count)
        batch_size = batch_size or _batch_size(measured[0], count, x, memory_budget)
        total = _add_to_examples(total, maps, start, len(x))
        start += count
    assert total is not None
    return total / samples
