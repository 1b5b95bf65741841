"""Where the notebooks run: a hosted service (Binder, Colab) or not, and torch's thread count.

* :func:`hosted_environment` tells Binder and Colab apart from a laptop or CI by the environment
  alone, without touching the network: BinderHub's spawner sets ``BINDER_*`` variables in every
  session it starts, and Colab's kernel has the ``google.colab`` module and ``COLAB_*`` variables.
  The photo sections download ImageNet weights there only (:func:`deconvlab.models.photo_model`).
* :func:`set_notebook_threads` is what each notebook calls in its import cell: torch on
  :data:`NOTEBOOK_THREADS` thread(s), the count that ran the notebooks fastest on a shared
  2-core machine (``benchmarks/bench_notebooks.py`` measures it, quiet and under load).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch

from .checks import as_int

__all__ = [
    "BINDER_VARIABLES",
    "COLAB_VARIABLES",
    "NOTEBOOK_THREADS",
    "hosted_environment",
    "set_notebook_threads",
]

#: Set by BinderHub's spawner (``BinderSpawnerMixin.get_env``) in every Binder session, and
#: ``BINDER_SERVICE_HOST`` by Kubernetes for mybinder.org's ``binder`` service. A plain
#: JupyterHub sets none of them (``JUPYTERHUB_*`` alone does not mean Binder).
BINDER_VARIABLES = (
    "BINDER_LAUNCH_HOST",
    "BINDER_REQUEST",
    "BINDER_PERSISTENT_REQUEST",
    "BINDER_REPO_URL",
    "BINDER_REF_URL",
    "BINDER_SERVICE_HOST",
)
#: Set in Colab's runtime (CPU and GPU ones alike).
COLAB_VARIABLES = ("COLAB_RELEASE_TAG", "COLAB_GPU")

#: Torch threads for notebook cells. On a shared 2-core machine (load average 1.3-12.5, with and
#: without a competing spinning core) each notebook's median run was 1.9-3.8x faster on one thread
#: than on two; of the 30 run pairs timed one by one, two threads won one, by 13 % (README, "One
#: torch thread for notebook cells"; ``benchmarks/bench_notebooks.py``).
NOTEBOOK_THREADS = 1


def _colab_importable() -> bool:
    if "google.colab" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no ``google`` package at all
        return False


def hosted_environment() -> str | None:
    """``"binder"``, ``"colab"`` or ``None`` (a laptop, a server, CI), read from the environment.

    Nothing is sent over the network: Binder is recognised by any of :data:`BINDER_VARIABLES`,
    Colab by the ``google.colab`` module or any of :data:`COLAB_VARIABLES`.
    """
    if any(os.environ.get(name) for name in BINDER_VARIABLES):
        return "binder"
    if any(name in os.environ for name in COLAB_VARIABLES) or _colab_importable():
        return "colab"
    return None


def set_notebook_threads(threads: int | None = None) -> int:
    """Run torch's CPU kernels on the thread count that is fastest for notebook cells.

    Parameters
    ----------
    threads : int, optional
        The count to use. Default: the environment variable ``DECONVLAB_THREADS`` if set (the
        benchmark sets it to compare counts), else :data:`NOTEBOOK_THREADS`.

    Returns
    -------
    int
        The thread count now in force (``torch.get_num_threads()``).
    """
    if threads is None:
        text = os.environ.get("DECONVLAB_THREADS", "").strip()
        if not text:
            threads = NOTEBOOK_THREADS
        elif text.isdigit():
            threads = int(text)
        else:
            raise ValueError(f"DECONVLAB_THREADS must be a positive integer, got {text!r}")
    torch.set_num_threads(as_int("threads", threads, 1, 1024))
    return torch.get_num_threads()
