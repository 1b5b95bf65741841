"""The Colab first cell every notebook carries, and a sandbox that runs such a cell.

The sandbox executes a cell with a fake IPython and fake process launchers, so nothing is
installed and nothing touches the network; it records the magics and commands the cell ran.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from unittest import mock

from tools.notebook_source import python_source

GITHUB = "https://github.com/deconvlab/deconvlab"

# The first cell of every notebook (see the README's Colab badges): it installs deconvlab on
# Colab only and does nothing anywhere else.
COLAB_CELL = """\
# On Google Colab, install deconvlab first (this cell does nothing anywhere else).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "deconvlab @ git+https://github.com/deconvlab/deconvlab"], check=True)
"""  # noqa: E501 (the cell as students see it)


class _FakeIPython:
    """Records line/cell magics and shell escapes instead of running them."""

    def __init__(self, calls: list[tuple]):
        self.calls = calls

    def run_line_magic(self, name, line):
        self.calls.append(("magic", name, line))

    def run_cell_magic(self, name, line, cell):
        self.calls.append(("magic", name, line))

    def system(self, cmd):
        self.calls.append(("command", cmd))

    def getoutput(self, cmd):
        self.calls.append(("command", cmd))
        return []


def _fake_launchers(calls: list[tuple]) -> list:
    """Patches that record ``subprocess.*`` and ``os.system`` calls instead of running them."""

    def command(*args, **kwargs):
        cmd = args[0] if args else kwargs.get("args")
        calls.append(("command", cmd if isinstance(cmd, str) else " ".join(map(str, cmd))))
        return subprocess.CompletedProcess(cmd, 0, b"", b"")

    patches = [
        mock.patch.object(subprocess, name, command)
        for name in ("run", "call", "check_call", "check_output", "Popen")
    ]
    return [*patches, mock.patch.object(os, "system", command)]


def run_colab_cell(source: str, on_colab: bool) -> list[tuple]:
    """Run a first cell in the sandbox, as on Colab or elsewhere.

    Parameters
    ----------
    source : str
        The cell (IPython syntax allowed).
    on_colab : bool
        Whether ``google.colab`` is importable, as on Colab.

    Returns
    -------
    list of tuple
        ``("magic", name, line)`` or ``("command", text)`` for each thing the cell ran.
    """
    calls: list[tuple] = []
    code = compile(python_source(source), "<first cell>", "exec")
    ipython = _FakeIPython(calls)
    with contextlib.ExitStack() as stack:
        for patch in _fake_launchers(calls):
            stack.enter_context(patch)
        modules = {"google.colab": type(sys)("google.colab")} if on_colab else {}
        stack.enter_context(mock.patch.dict(sys.modules, modules))
        if not on_colab:
            sys.modules.pop("google.colab", None)
        exec(code, {"get_ipython": lambda: ipython, "__name__": "__main__"})
    return calls


def installs_deconvlab(call: tuple) -> bool:
    """Whether a recorded call is a ``%pip install`` / ``pip install`` of deconvlab from GitHub."""
    text = call[-1]
    is_pip = (call[:2] == ("magic", "pip")) or (call[0] == "command" and " pip install" in text)
    return is_pip and f"git+{GITHUB}" in text
