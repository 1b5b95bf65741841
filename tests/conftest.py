"""Shared fixtures: small deterministic CNNs that exercise max-pooling and ReLU, and a rule
registry restored after every test."""

import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
TESTS = Path(__file__).resolve().parent
for _path in (TESTS, TESTS.parent):  # reference_backprop; the repository's tools/
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
torch.set_num_threads(2)

from small_nets import small_cnn  # noqa: E402 - after the path above


@pytest.fixture(autouse=True)
def _restore_rule_registry():
    """Undo every ``dl.register_rule`` a test makes (the registry is a module-level dict)."""
    from deconvlab import rules

    saved = dict(rules._REGISTRY)
    yield
    rules._REGISTRY.clear()
    rules._REGISTRY.update(saved)


@pytest.fixture
def cnn() -> nn.Sequential:
    return small_cnn()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16, dtype=torch.float64)
