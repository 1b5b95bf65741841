"""Every notebook's claims hold for any data seed, not only the one shown.

Each notebook takes its data seed from one variable, ``SEED = dl.data.data_seed(default)``, which
``DECONVLAB_SEED`` overrides. This runs every notebook through nbval with ``DECONVLAB_SEED`` = 0 ... 9,
two runs at a time: the notebooks run torch on one thread (``deconvlab.runtime``), so two runs fill
the two cores of the CI machine. It is the suite's longest test and CI runs it in full (marker ``seeds``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deconvlab.data import SEED_VARIABLE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SEEDS = range(10)
PARALLEL = 2


def _nbval(notebook: Path, seed: int) -> tuple[int, float, str]:
    environment = {**os.environ, SEED_VARIABLE: str(seed)}
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", str(notebook)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return run.returncode, time.perf_counter() - started, run.stdout[-3000:]


@pytest.mark.seeds
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_every_claim_holds_for_ten_data_seeds(notebook):
    with ThreadPoolExecutor(PARALLEL) as pool:
        runs = dict(zip(SEEDS, pool.map(lambda seed: _nbval(notebook, seed), SEEDS)))
    print(", ".join(f"seed {seed}: {seconds:.0f} s" for seed, (_, seconds, _) in runs.items()))
    failed = {seed: output for seed, (code, _, output) in runs.items() if code != 0}
    assert not failed, "\n\n".join(f"{SEED_VARIABLE}={seed}:\n{output}" for seed, output in failed.items())
