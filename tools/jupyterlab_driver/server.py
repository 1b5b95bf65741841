"""A private JupyterLab server: loopback only, random token, stopped by PID with its kernels."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tools.jupyterlab_driver import server_logs
from tools.jupyterlab_driver.server_setup import (
    copy_notebooks,
    server_command,
    server_env,
    write_server_files,
)

SERVER_START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """PIDs of every live descendant of ``pid`` (empty without psutil)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is in the test extras
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


class JupyterLab:
    """A JupyterLab server under ``base``, serving a copy of the notebooks at ``notebooks/``.

    Parameters
    ----------
    base : Path
        An empty temporary directory for the server's files.
    disabled_extensions : tuple of str
        Lab extensions to disable (only to prove the driver notices a missing front end).
    """

    def __init__(self, base: Path, disabled_extensions: tuple[str, ...] = ()):
        self.base = base
        self.disabled_extensions = disabled_extensions
        self.root = base / "root"
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "jupyterlab.log"
        self.kernel_error_log = base / "kernel-errors.log"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._workspaces = 0

    def start(self) -> None:
        """Write the server's files, start it in its own session and wait until it answers."""
        dirs = write_server_files(self.base, self.disabled_extensions)
        self.root.mkdir(parents=True, exist_ok=True)
        copy_notebooks(self.root / "notebooks")
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            server_command(dirs, self.root, self.port, self.token),
            cwd=self.root,
            env=server_env(dirs, self.kernel_error_log),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if isinstance(self.api("GET", "/api/status"), dict):
                    return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut the kernels down, end the server's process group, then any leftover by PID."""
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.shutdown_kernels()
        # Kernels run in their own sessions (jupyter_client uses start_new_session), so note
        # every descendant now and end the leftovers by PID after the server's process group.
        leftovers = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self.proc = None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def api(self, method: str, path: str):
        """Call the server's REST API; the decoded JSON answer, or None for an empty one."""
        req = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Delete every session and kernel."""
        for session in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels") or []:
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def kernel_peak_rss_mb(self, kernel_id: str) -> float | None:
        """Peak resident memory (VmHWM) of a running kernel process, in MB."""
        peak = None
        for pid in descendants(self.proc.pid):
            try:
                if f"kernel-{kernel_id}.json".encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak or 0.0, int(line.split()[1]) / 1024)
            except OSError:
                continue
        return peak

    def log_offsets(self) -> tuple[int, int]:
        """Sizes of the server log and the kernels' error log, for ``errors_since``."""
        return server_logs.size(self.log_path), server_logs.size(self.kernel_error_log)

    def errors_since(self, offsets: tuple[int, int]) -> list[str]:
        """Errors the kernels logged since ``log_offsets()`` returned ``offsets``."""
        server = server_logs.server_log_problems(server_logs.read_from(self.log_path, offsets[0]))
        kernel = server_logs.kernel_error_entries(server_logs.read_from(self.kernel_error_log, offsets[1]))
        return [f"kernel log: {e}" for e in server] + [f"kernel logged an error: {e}" for e in kernel]

    def log_tail(self, n: int = 60) -> str:
        """The last ``n`` lines of the server log."""
        return "\n".join(server_logs.read_from(self.log_path, 0).splitlines()[-n:])

    def lab_url(self, rel_path: str) -> str:
        """The notebook in a fresh JupyterLab workspace: nothing opened earlier is restored
        (the default workspace would reopen, and start kernels for, every earlier notebook)."""
        self._workspaces += 1
        name = f"browser-test-{self._workspaces}"
        return f"{self.url}/lab/workspaces/{name}/tree/{rel_path}?reset&token={self.token}"
