"""Everything a private JupyterLab server needs on disk, its environment and its command line.

The server gets its own config, data, runtime, settings, workspace and IPython directories, a
``python3`` kernelspec that is this interpreter, Binder's settings (``binder/overrides.json``)
plus a few test-only ones, and a copy of the repository's notebooks.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO / "notebooks"
BINDER_OVERRIDES = REPO / "binder" / "overrides.json"
DIR_NAMES = ("config", "data", "runtime", "app-settings", "user-settings", "workspaces", "ipython")
KERNEL_ERROR_LOG_VAR = "DECONVLAB_KERNEL_ERROR_LOG"
KERNELSPEC = {
    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "metadata": {"debugger": False},
}
NOTEBOOK_KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
# On top of binder/overrides.json: no autosave, no notifications. Cells are windowed as on
# Binder (JupyterLab 4 renders only the cells in view), so the driver reads cell state from the
# notebook model and scrolls each widget output into view before checking it.
TEST_ONLY_SETTINGS = {
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}
# Server-side: no news feed, no update check, no extension manager talking to PyPI.
SERVER_CONFIG = {
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "extension_manager": "readonly",
    },
}


def pin_kernel(nb_path: Path) -> None:
    """Make a notebook ask for the ``python3`` kernel (the venv's), so no kernel dialog opens."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    if nb.setdefault("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        nb["metadata"]["kernelspec"] = NOTEBOOK_KERNELSPEC
        nb_path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


def copy_notebooks(dst: Path, src: Path = NOTEBOOKS_DIR) -> None:
    """Copy ``src`` (with whatever the notebooks read next to them) and pin their kernel."""
    if src.is_dir():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    else:
        dst.mkdir(parents=True)
    for nb_path in dst.rglob("*.ipynb"):
        pin_kernel(nb_path)


def lab_settings(overrides: Path = BINDER_OVERRIDES) -> dict:
    """Binder's JupyterLab settings overrides with ``TEST_ONLY_SETTINGS`` merged in."""
    settings = json.loads(overrides.read_text(encoding="utf-8")) if overrides.is_file() else {}
    for plugin, values in TEST_ONLY_SETTINGS.items():
        settings.setdefault(plugin, {}).update(values)
    return settings


def write_server_files(base: Path, disabled_extensions: tuple[str, ...] = ()) -> dict[str, Path]:
    """Create the private directories under ``base`` and the files the server reads.

    Parameters
    ----------
    base : Path
        An empty temporary directory.
    disabled_extensions : tuple of str
        Lab extensions to disable (only to prove the driver notices a missing front end).

    Returns
    -------
    dict
        Directory name (``DIR_NAMES``) -> path.
    """
    dirs = {name: base / name for name in DIR_NAMES}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    kernel_dir = dirs["data"] / "kernels" / "python3"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(json.dumps(KERNELSPEC), encoding="utf-8")
    startup = dirs["ipython"] / "profile_default" / "startup"
    startup.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("ipython_startup.py"), startup / "00-deconvlab-tests.py")
    if disabled_extensions:
        (dirs["app-settings"] / "page_config.json").write_text(
            json.dumps({"disabledExtensions": dict.fromkeys(disabled_extensions, True)}), encoding="utf-8"
        )
    (dirs["app-settings"] / "overrides.json").write_text(
        json.dumps(lab_settings(), indent=2), encoding="utf-8"
    )
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG), encoding="utf-8")
    return dirs


def server_env(dirs: dict[str, Path], kernel_error_log: Path) -> dict[str, str]:
    """The server's environment: private Jupyter dirs; kernels import this working tree."""
    env = dict(os.environ)
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH", "JUPYTERLAB_DIR"):
        env.pop(var, None)
    env.update(
        {
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["user-settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1",
            KERNEL_ERROR_LOG_VAR: str(kernel_error_log),
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(min(os.cpu_count() or 2, 2))),
        }
    )
    return env


def server_command(dirs: dict[str, Path], root: Path, port: int, token: str) -> list[str]:
    """``python -m jupyterlab`` on 127.0.0.1:``port`` only, with ``token``, serving ``root``."""
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_remote_access=False",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for the page scripts
        f"--LabApp.app_settings_dir={dirs['app-settings']}",
        f"--LabApp.user_settings_dir={dirs['user-settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        "--LanguageServerManager.autodetect=False",
        "--MappingKernelManager.default_kernel_name=python3",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    return cmd
