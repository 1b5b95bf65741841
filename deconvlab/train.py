"""Train the teaching model from scratch, deterministically, on CPU.

``python -m deconvlab.train`` reproduces ``deconvlab/weights/teaching_model.safetensors`` and its
``.json`` record. The recipe (everything is seeded; data are drawn on the fly):

* images from :func:`deconvlab.data.shapes`, batch ``b`` of step ``t`` with dataset seed
  ``1 + t + 100_000 * seed``; held-out evaluation uses the never-trained-on seed
  :data:`HELDOUT_SEED` (``10_000_000``);
* background clutter ramped from 0 to 1 over the first half of training (curriculum,
  Bengio et al., ICML 2009), random flips and quarter turns (label-preserving for every class);
* He initialisation, BatchNorm after every convolution, AdamW with linear warm-up then cosine
  decay (Loshchilov & Hutter, ICLR 2017);
* the BatchNorm layers are folded into the convolutions before saving, so the shipped network is
  plain Conv/ReLU/MaxPool, as DeConvNet and guided backpropagation assume.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .data import CLASSES, shapes
from .model_state import evaluating
from .models import TEACHING_CONFIG, TEACHING_WEIGHTS, TeachingCNN, fold_batchnorm

__all__ = ["HELDOUT_SEED", "evaluate", "main", "save", "train"]

#: Dataset seed of the held-out evaluation set; training seeds stay below it.
HELDOUT_SEED = 10_000_000


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and quarter turn for the whole batch (cheap, label-preserving)."""
    if torch.rand((), generator=gen) < 0.5:
        x = x.flip(-1)
    k = int(torch.randint(4, (), generator=gen))
    return torch.rot90(x, k, (-2, -1)) if k else x


@torch.no_grad()
def evaluate(model: torch.nn.Module, n: int = 2000, seed: int = HELDOUT_SEED, clutter: float = 1.0) -> float:
    """Accuracy of ``model`` on ``n`` fresh images of ``shapes(n, seed)`` (default: held out).

    The model runs in eval mode; each module's own mode is restored afterwards.
    """
    correct = 0
    with evaluating(model):
        for start in range(0, n, 500):
            ds = shapes(min(500, n - start), seed=seed, offset=start, clutter=clutter)
            correct += int((model(ds.images).argmax(1) == ds.labels).sum())
    return correct / n


def train(
    steps: int = 2000,
    batch_size: int = 32,
    seed: int = 0,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    warmup: int | None = None,
    config: tuple | None = None,
    clutter: float = 1.0,
    threads: int = 1,
    log: Callable[[str], None] | None = print,
    log_every: int = 250,
) -> TeachingCNN:
    """Train a :class:`~deconvlab.models.TeachingCNN` and return it with BatchNorm folded in.

    Deterministic: same arguments, same torch build and thread count give the same weights.
    Global torch settings (thread count, deterministic mode, RNG state) are restored on return.

    Parameters
    ----------
    steps : int, default 2000
        Optimisation steps.
    batch_size : int, default 32
        Images per step.
    seed : int, default 0
        Seeds the initialisation, the augmentation and the training data.
    lr, weight_decay : float
        AdamW peak learning rate and weight decay.
    warmup : int, optional
        Warm-up steps (default 5% of ``steps``).
    config : tuple, optional
        Convolution widths and ``"M"`` pools (default :data:`~deconvlab.models.TEACHING_CONFIG`).
    clutter : float, default 1.0
        Final amount of background clutter, reached half-way through training (0: plain
        backgrounds throughout, a quick exercise).
    threads : int, default 1
        CPU threads for the network. One thread is the default because, on a 2-core machine
        shared with other work, two OpenMP threads were measured 4-6x *slower* per step than
        one (each waits for the other at every barrier); results are bitwise reproducible for
        a given torch build and thread count, not across thread counts.
    log : callable, optional
        Progress printer (``None`` for silence).
    log_every : int, default 250
        Steps between progress lines.

    Returns
    -------
    TeachingCNN
        Plain Conv/ReLU/MaxPool model in eval mode.
    """
    if 1 + steps + 100_000 * seed >= HELDOUT_SEED or steps >= 100_000:
        raise ValueError("training data seeds would reach the held-out seed; lower steps/seed")
    warmup = max(1, steps // 20) if warmup is None else warmup
    saved_threads = torch.get_num_threads()
    saved_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = TeachingCNN(config=TEACHING_CONFIG if config is None else tuple(config), batchnorm=True)
            gen = torch.Generator().manual_seed(seed)
            _fit(model, steps, batch_size, seed, lr, weight_decay, warmup, clutter, gen, log, log_every)
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_det)
    return fold_batchnorm(model.eval())


def _fit(model, steps, batch_size, seed, lr, weight_decay, warmup, clutter_max, gen, log, log_every):
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    other = [p for n, p in model.named_parameters() if p.ndim <= 1]
    groups: list[dict[str, Any]] = [{"params": decay}, {"params": other, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(
        groups,
        lr=lr,
        weight_decay=weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: _lr_factor(t, steps, warmup))
    model.train()
    t0, running = time.perf_counter(), 0.0
    for step in range(steps):
        clutter = clutter_max * min(1.0, step / max(1.0, steps / 2))  # ramp over first half
        ds = shapes(batch_size, seed=1 + step + 100_000 * seed, clutter=clutter)
        x = _augment(ds.images, gen)
        loss = F.cross_entropy(model(x), ds.labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += loss.item()
        if log is not None and ((step + 1) % log_every == 0 or step + 1 == steps):
            n = (step % log_every) + 1
            log(
                f"step {step + 1:5d}/{steps}  loss {running / n:.3f}  clutter {clutter:.2f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  {time.perf_counter() - t0:.0f}s"
            )
            running = 0.0


def save(model: TeachingCNN, path: str | Path, meta: dict) -> dict:
    """Write ``model`` to ``path`` (safetensors) and its record to ``path.with_suffix('.json')``.

    The record holds the file's sha256, which :func:`deconvlab.models.teaching_model` checks.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    path.chmod(0o644)
    record = {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "bytes": path.stat().st_size,
        "architecture": "TeachingCNN",
        "config": list(model.config),
        "classes": list(CLASSES),
        **meta,
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m deconvlab.train [--out PATH] [--steps N] [--seed S]``."""
    p = argparse.ArgumentParser(prog="python -m deconvlab.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(TEACHING_WEIGHTS), help="output .safetensors file")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-images", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    model = train(a.steps, a.batch_size, a.seed, a.lr, threads=a.threads)
    seconds = time.perf_counter() - t0
    torch.set_num_threads(a.threads)
    acc = evaluate(model, a.eval_images)
    print(f"held-out accuracy {acc:.4f} on {a.eval_images} images (seed {HELDOUT_SEED})")
    record = save(
        model,
        a.out,
        {
            "heldout_accuracy": round(acc, 4),
            "heldout_images": a.eval_images,
            "heldout_seed": HELDOUT_SEED,
            "steps": a.steps,
            "batch_size": a.batch_size,
            "seed": a.seed,
            "lr": a.lr,
            "threads": a.threads,
            "train_seconds": round(seconds, 1),
            "torch": torch.__version__,
        },
    )
    print(f"wrote {a.out} ({record['bytes']} bytes, sha256 {record['sha256']}) in {seconds:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
