"""Training the teaching model (deconvlab.train)."""

from __future__ import annotations

import json

import torch
from torch import nn

from deconvlab import models, train
from deconvlab.data import CLASSES


def test_short_training_rises_well_above_chance():
    """The first phase of the recipe (plain backgrounds): ~30 s on 2 cores."""
    torch.manual_seed(123)
    before = torch.rand(3)
    model = train.train(steps=300, batch_size=16, clutter=0.0, log=None)
    assert not model.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    acc = train.evaluate(model, n=300, clutter=0.0)  # held-out seed
    assert acc > 2.5 / len(CLASSES), acc  # measured 0.66 (chance 0.17)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), before), "global RNG untouched by training"


def test_training_is_deterministic_and_restores_global_settings():
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    a = train.train(steps=6, batch_size=4, seed=1, threads=1, log=None)
    b = train.train(steps=6, batch_size=4, seed=1, threads=1, log=None)
    c = train.train(steps=6, batch_size=4, seed=2, threads=1, log=None)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_training_never_sees_the_heldout_seed():
    import pytest

    with pytest.raises(ValueError, match="held-out"):
        train.train(steps=10, seed=100, log=None)


def test_command_line_writes_loadable_weights(tmp_path, monkeypatch, capsys):
    out = tmp_path / "w" / "teaching_model.safetensors"
    assert (
        train.main(
            ["--out", str(out), "--steps", "3", "--batch-size", "4", "--eval-images", "20", "--threads", "1"]
        )
        == 0
    )
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["steps"] == 3 and meta["heldout_images"] == 20
    assert meta["heldout_seed"] == train.HELDOUT_SEED and "sha256" in meta
    assert "held-out accuracy" in capsys.readouterr().out
    monkeypatch.setattr(models, "TEACHING_WEIGHTS", out)
    monkeypatch.setattr(models, "TEACHING_META", out.with_suffix(".json"))
    model = models.teaching_model()
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, len(CLASSES))
