"""Run a model the way attribution needs it, and leave it as it was found.

Attribution runs the model in eval mode (dropout off, batch-norm on running
statistics), so that the map explains the function the model computes at test
time. Every module's ``training`` flag is restored afterwards, one by one, also
when the forward or backward pass fails or is interrupted: both context managers are
critical sections (:mod:`deconvlab.interrupts`), so a Ctrl-C never cuts a restoration short.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import repeat

from torch import nn
from torch.utils.hooks import RemovableHandle

from .interrupts import Section, critical

__all__ = ["evaluating", "removing"]


@contextmanager
@critical
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode; restore each module's own flag on exit."""
    with Section():
        modules = list(model.modules())
        flags = [module.training for module in modules]
        try:
            model.eval()
            yield model
        finally:
            list(map(setattr, modules, repeat("training"), flags))


@contextmanager
@critical
def removing(handles: list[RemovableHandle]) -> Iterator[list[RemovableHandle]]:
    """Remove every hook handle added to ``handles`` on exit."""
    with Section():
        try:
            yield handles
        finally:
            list(map(RemovableHandle.remove, handles))
