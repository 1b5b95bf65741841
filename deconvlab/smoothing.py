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

from .attribution import Layer, attribute, record
from .checks import (
    Inputs,
    Target,
    Targets,
    as_bool,
    as_int,
    as_real,
    check_forward_args,
    check_inputs,
    check_model,
    check_targets,
    describe,
)
from .escapes import check_finite_input, eager_module
from .model_state import removing
from .rules import GRADIENT, RuleLike

__all__ = ["DEFAULT_MEMORY_BUDGET", "smoothgrad"]

#: Bytes that one batch of noisy copies may take by default (about a quarter of a Binder kernel).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

#: The most noisy copies per example: the paper uses 50; a typo such as ``2**31`` would run for days.
MAX_SAMPLES = 100_000
#: The largest noise level: σ ten times the input's range is noise alone (the paper shows 0-50 %).
MAX_NOISE_LEVEL = 10.0

#: How much more than the layers' outputs one example takes in a forward and backward pass.
#: Measured (peak resident memory over the summed outputs) on torchvision's ResNet18: 1.4-1.5,
#: VGG11: 1.7-1.8, AlexNet: 2.8.
_MEMORY_FACTOR = 3.0


def noise_scale(x: Tensor, noise_level: float) -> Tensor:
    r""":math:`\sigma = \text{noise level} \cdot (x_{\max} - x_{\min})` per example, to broadcast on ``x``."""
    flat = x.detach().reshape(len(x), -1)
    if flat.shape[1] == 0:  # examples without values: no noise (attribute judges the shape)
        return x.new_zeros((len(x), *([1] * (x.dim() - 1))))
    spread = flat.amax(dim=1) - flat.amin(dim=1)
    return (noise_level * spread).view(-1, *([1] * (x.dim() - 1)))


class _NoisyCopies:
    """The ``samples × N`` noisy examples of each input, sample after sample, handed out in batches
    of any size.

    Sample ``s`` is ``x_i + σ_i · torch.randn(x_i.shape, generator=generator)`` for each input
    ``x_i`` in turn, drawn in order ``s = 0, 1, ...``, so a loop drawing the same way gets the
    same noise.
    """

    def __init__(
        self, inputs: tuple[Tensor, ...], noise_level: float, samples: int, generator: torch.Generator | None
    ) -> None:
        self.inputs = tuple(x.detach() for x in inputs)
        self.sigmas = tuple(noise_scale(x, noise_level) for x in inputs)
        self.generator = generator
        self.undrawn, self.drawn = samples, 0  # samples still to draw; examples drawn, not taken
        self.pending: list[tuple[Tensor, ...]] = []

    def _draw(self) -> tuple[Tensor, ...]:
        """One noisy copy of every example of every input."""
        return tuple(
            x + sigma * torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)
            for x, sigma in zip(self.inputs, self.sigmas)
        )

    def take(self, count: int) -> tuple[Tensor, ...]:
        """The next ``count`` noisy examples of each input (fewer at the end)."""
        while self.drawn < count and self.undrawn:
            self.pending.append(self._draw())
            self.drawn, self.undrawn = self.drawn + len(self.inputs[0]), self.undrawn - 1
        batch = tuple(parts[0] if len(parts) == 1 else torch.cat(parts) for parts in zip(*self.pending))
        self.pending = [tuple(part[count:] for part in batch)] if len(batch[0]) > count else []
        self.drawn = max(0, self.drawn - count)
        return tuple(part[:count] for part in batch)


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


def repeat_extras(extras: tuple, rows: Tensor, batch: int) -> tuple:
    """``additional_forward_args`` for the noisy examples ``rows`` (copies of examples ``rows % batch``).

    A tensor whose first dimension is the batch size holds a row per example and is repeated
    for each noisy copy of its example (Captum's ``NoiseTunnel`` repeats every tensor); any other
    argument is passed as it is.
    """
    examples = rows % batch
    return tuple(
        arg[examples.to(arg.device)] if isinstance(arg, Tensor) and arg.dim() and len(arg) == batch else arg
        for arg in extras
    )


def _noisy_targets(target: Target | None, many: list | None, rows: Tensor, batch: int) -> dict[str, Any]:
    """``attribute``'s ``target=`` or ``targets=`` for the noisy examples ``rows``."""
    if many is None:
        assert target is not None  # check_targets refused a missing target
        return {"target": repeat_target(target, rows, batch)}
    repeated = []
    for k, item in enumerate(many):
        try:
            repeated.append(repeat_target(item, rows, batch))
        except ValueError as error:
            raise ValueError(f"targets[{k}]: {error}") from None
    return {"targets": repeated}


def _rows_first(maps: Tensor | tuple[Tensor, ...], many: bool) -> tuple[Tensor, ...]:
    """``attribute``'s maps as a tuple (one per input), the noisy examples in front (``(T, rows, ...)``
    with several targets becomes ``(rows, T, ...)``)."""
    parts = maps if isinstance(maps, tuple) else (maps,)
    return tuple(part.movedim(0, 1) if many else part for part in parts)


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


def _batch_size(measured: int, rows: int, inputs: tuple[Tensor, ...], memory_budget: int) -> int:
    """Noisy examples per call: the budget over the estimated bytes of one example."""
    row_bytes = sum(x[:1].nelement() * x.element_size() for x in inputs)
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
    x: Inputs,
    target: Target | None = None,
    rule: RuleLike = "gradient",
    *,
    layer: Layer = None,
    targets: Targets | None = None,
    additional_forward_args: object = None,
    samples: int = 16,
    noise_level: float = 0.15,
    squared: bool = False,
    generator: torch.Generator | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    batch_size: int | None = None,
) -> Any:
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
        As in :func:`deconvlab.attribute`. ``x`` may be a tuple of inputs, each given its own
        noise (scaled by its own range). A per-example target (a list, a 1-D tensor, a seed
        tensor) is repeated for every noisy copy of its example.
    rule : str or Rule, default "gradient"
        The map :math:`M`: anything ``attribute``'s ``rule=`` takes. The paper smooths the gradient.
    layer : str or nn.Module, optional
        Smooth the signal at this layer's output instead of at the input (the noise is always
        added to ``x``).
    targets : list of targets, or "topK", optional
        A smoothed map per target, as ``attribute``'s ``targets=`` (``(T, N, ...)``), each
        noisy batch run forward once for all targets. ``"topK"`` ranks the classes of the
        noise-free ``x`` (one extra forward pass), so every copy explains the same classes.
    additional_forward_args : tuple, optional
        As in :func:`deconvlab.attribute`, without noise. A tensor whose first dimension is the
        batch size holds a row per example and is repeated with its example's noisy copies;
        any other argument is passed as it is (give a constant as a number or a 0-d tensor).
    samples : int, default 16
        Noisy copies per example, from 1 to 100,000.
    noise_level : float, default 0.15
        :math:`\sigma` as a fraction of each example's range, from 0 (no noise) to 10.
    squared : bool, default False
        Average the squared maps (SmoothGrad-Squared).
    generator : torch.Generator, optional
        The noise's source, for reproducible maps; by default PyTorch's global generator.
        Sample ``s`` is ``x + σ * torch.randn(x.shape, generator=generator)`` (for a tuple, each
        input in turn), drawn in order.
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
    Tensor or tuple of Tensor
        Shaped like ``attribute``'s maps for the same arguments (like ``x``, a tuple for a tuple
        ``x``, like ``layer``'s output; ``(T, ...)`` in front with ``targets=``), detached.
        ``samples=1, noise_level=0`` gives exactly ``attribute(model, x, target, rule, ...)``.

    Raises
    ------
    TypeError
        As :func:`deconvlab.attribute`; ``samples``, ``memory_budget`` or ``batch_size`` is no
        integer; ``noise_level`` no number; ``squared`` no bool; ``generator`` no ``torch.Generator``.
    ValueError
        As :func:`deconvlab.attribute`; ``samples``, ``memory_budget`` or ``batch_size`` below 1;
        ``samples`` above 100,000; ``noise_level`` negative, above 10, NaN or infinite; a
        per-example ``target`` (or ``targets[k]``) whose length is not ``x``'s batch size; a
        ``generator`` on another device than ``x``.

    Examples
    --------
    >>> smooth = dl.smoothgrad(model, x, 3, "guided_backprop", samples=32,
    ...                         generator=torch.Generator().manual_seed(0))   # doctest: +SKIP
    >>> top3 = dl.smoothgrad(model, x, targets="top3")              # (3, N, 3, H, W)  # doctest: +SKIP
    """
    check_model(model)
    inputs = check_inputs(model, x)
    for i, item in enumerate(inputs):
        check_finite_input(item, f"x[{i}]" if isinstance(x, tuple) else "x")
    extras = check_forward_args(eager_module(model), len(inputs), additional_forward_args)
    many = check_targets(target, targets)
    samples = as_int("samples", samples, minimum=1, maximum=MAX_SAMPLES)
    noise_level = as_real("noise_level", noise_level, minimum=0.0, maximum=MAX_NOISE_LEVEL)
    squared = as_bool("squared", squared)
    memory_budget = as_int("memory_budget", memory_budget, minimum=1)
    batch_size = None if batch_size is None else as_int("batch_size", batch_size, minimum=1)
    generator = _check_generator(generator, inputs[0])
    examples = len(inputs[0])
    if examples == 0:  # nothing to smooth: attribute's empty map
        return attribute(
            model, x, target, rule, layer, targets=targets, additional_forward_args=additional_forward_args
        )
    if isinstance(many, int):  # "topK": the classes of the noise-free input, for every copy
        many = record(model, x, targets=targets, rule=GRADIENT, additional_forward_args=extras).targets
    copies = _NoisyCopies(inputs, noise_level, samples, generator)

    def maps_of(start: int, count: int) -> Tensor | tuple[Tensor, ...]:
        """``attribute``'s maps of noisy examples ``start, ..., start + count - 1``, in one call."""
        rows = torch.arange(start, start + count)
        noisy = copies.take(count)
        return attribute(
            model,
            noisy if isinstance(x, tuple) else noisy[0],
            rule=rule,
            layer=layer,
            additional_forward_args=repeat_extras(extras, rows, examples),
            **_noisy_targets(target, many, rows, examples),
        )

    totals: list[Tensor | None] = []
    start, end = 0, samples * examples
    while start < end:
        count = min(end - start, batch_size or examples)
        with nullcontext([0]) if batch_size else _metering(model) as measured:
            maps = maps_of(start, count)
        batch_size = batch_size or _batch_size(measured[0], count, inputs, memory_budget)
        parts = [part * part if squared else part for part in _rows_first(maps, many is not None)]
        totals = [
            _add_to_examples(total, part, start, examples)
            for total, part in zip(totals or [None] * len(parts), parts)
        ]
        start += count
    means = tuple(total / samples for total in totals if total is not None)
    if many is not None:
        means = tuple(mean.movedim(1, 0).contiguous() for mean in means)
    return means if isinstance(maps, tuple) else means[0]
