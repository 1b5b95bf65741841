"""Shared fixtures: small deterministic CNNs that exercise max-pooling and ReLU."""

import os
import sys

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
sys.path.insert(0, os.path.dirname(__file__))  # reference_backprop
torch.set_num_threads(2)


def small_cnn(inplace: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    ).double()


@pytest.fixture
def cnn() -> nn.Sequential:
    return small_cnn()


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 16, dtype=torch.float64)
