"""Browser harness: a private JupyterLab server driven by Chromium through Playwright.

nbval executes notebooks in a kernel but never renders a widget. These fixtures start a real
JupyterLab (loopback only, random token, temporary config/data/runtime/settings/workspace
dirs), open each notebook in Debian's Chromium, run all cells from the front end, and check what a
student would see: every cell executed, no error output, every widget rendered, and the first
slider redraws its view when moved with the keyboard.

Chromium is taken from ``/usr/bin/chromium`` (``DECONVLAB_CHROMIUM`` overrides it). Without it the
tests skip, except in CI (``CI=true``), where they fail: ``.ci/run`` installs it.

Artifacts: one screenshot per notebook and the server log go to ``DECONVLAB_BROWSER_ARTIFACTS``
(default: a pytest temporary folder, printed in the summary). The timing table is printed at the
end of the session and written as JSON to ``DECONVLAB_BROWSER_REPORT`` when that is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO / "notebooks"
BINDER_OVERRIDES = REPO / "binder" / "overrides.json"
CHROMIUM = Path(os.environ.get("DECONVLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT_S = 90.0
NOTEBOOK_OPEN_TIMEOUT_S = 90.0
NOTEBOOK_RUN_TIMEOUT_S = float(os.environ.get("DECONVLAB_BROWSER_RUN_TIMEOUT", "240"))
WIDGET_SETTLE_TIMEOUT_S = 20.0
SLIDER_TIMEOUT_S = 2.0
SLIDER_MOVES = 5
VIEWPORT = {"width": 1400, "height": 1000}

# Settings used only by the tests, on top of binder/overrides.json (which is what Binder uses):
# render every cell (no windowing, so off-screen widgets are in the DOM) and never autosave.
TEST_ONLY_SETTINGS = {
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}

KERNEL_STARTUP = """\
# Written by tests/browser/conftest.py into a temporary IPYTHONDIR.
import logging as _logging


class _ErrorsToFile(_logging.Handler):
    def emit(self, record):
        with open(ERROR_LOG, "a", encoding="utf-8") as f:
            f.write(self.format(record).replace("\\n", "\\n    ") + "\\n")


_handler = _ErrorsToFile(level=_logging.ERROR)
_handler.setFormatter(_logging.Formatter("%(name)s: %(message)s"))
for _name in ("Comm", "ipykernel.comm"):  # where exceptions in comm handlers are logged
    _logging.getLogger(_name).addHandler(_handler)
    _logging.getLogger(_name).addHandler(_logging.lastResort)  # and still to stderr, as before


def _record_tracebacks(shell):
    # ipywidgets reports an exception in a callback with shell.showtraceback(), whose output
    # goes to JupyterLab's log console, not to a cell: record every traceback shown.
    show = shell.showtraceback

    def showtraceback(*args, **kwargs):
        import sys

        etype, value = sys.exc_info()[:2]
        if value is None:
            etype, value = getattr(sys, "last_type", None), getattr(sys, "last_value", None)
        if value is not None:
            with open(ERROR_LOG, "a", encoding="utf-8") as f:
                f.write(f"traceback shown: {etype.__name__}: {value}\\n")
        return show(*args, **kwargs)

    shell.showtraceback = showtraceback


_record_tracebacks(get_ipython())  # noqa: F821 (IPython startup file)
del _handler, _name, _ErrorsToFile, _record_tracebacks
"""

# Errors every kernel logs at start-up with ipywidgets' front end: the widget manager asks for
# comm targets before the notebook has imported ipywidgets.
BENIGN_KERNEL_ERRORS = ("No such comm target registered: jupyter.widget",)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SLIDER_HANDLES = ".widget-slider .noUi-handle, .widget-slider .ui-slider-handle"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip outside CI; fail loudly in CI, where the browser suite must always run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# session report (timing table)
# --------------------------------------------------------------------------------------------


@dataclass
class NotebookReport:
    notebook: str
    run_s: float | None = None
    code_cells: int = 0
    executed_cells: int = 0
    sliders: int = 0
    slider_round_trip_ms: float | None = None  # median over SLIDER_MOVES key presses
    slider_round_trip_ms_all: list[float] = field(default_factory=list)
    slider_view: str | None = None
    kernel_peak_rss_mb: float | None = None
    screenshot: str | None = None
    problems: list[str] = field(default_factory=list)


_REPORTS: list[NotebookReport] = []
_VERSIONS: dict[str, str] = {}
_ARTIFACTS: list[Path] = []


def pytest_terminal_summary(terminalreporter):
    if not _REPORTS:
        return
    tr = terminalreporter
    tr.section("deconvlab notebooks in the browser")
    tr.write_line(f"{'notebook':40} {'run (s)':>8} {'cells':>7} {'sliders':>7} "
                  f"{'slider RTT ms, median':>22} {'kernel peak (MB)':>16}")
    for r in _REPORTS:
        rtt = "-" if r.slider_round_trip_ms is None else (
            f"{r.slider_round_trip_ms:.0f} (max {max(r.slider_round_trip_ms_all):.0f})")
        run = "-" if r.run_s is None else f"{r.run_s:.1f}"
        mem = "-" if r.kernel_peak_rss_mb is None else f"{r.kernel_peak_rss_mb:.0f}"
        cells = f"{r.executed_cells}/{r.code_cells}"
        tr.write_line(f"{r.notebook:40} {run:>8} {cells:>7} {r.sliders:>7} {rtt:>22} {mem:>16}")
        for p in r.problems:
            tr.write_line(f"    ! {p}")
    for path in _ARTIFACTS:
        tr.write_line(f"screenshots and server log: {path}")
    out = os.environ.get("DECONVLAB_BROWSER_REPORT")
    if out:
        payload = {
            "versions": _VERSIONS,
            "slider_moves": SLIDER_MOVES,
            "notebooks": [asdict(r) for r in _REPORTS],
        }
        Path(out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        tr.write_line(f"timing report written to {out}")


# --------------------------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_notebooks(dst: Path) -> None:
    """Copy the repo's notebooks/ (with whatever they read next to them) and pin their kernel."""
    if NOTEBOOKS_DIR.is_dir():
        shutil.copytree(
            NOTEBOOKS_DIR,
            dst,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
        )
    else:
        dst.mkdir(parents=True)
    for nb_path in dst.rglob("*.ipynb"):
        _pin_kernel(nb_path)


def _pin_kernel(nb_path: Path) -> None:
    """Make the notebook ask for the ``python3`` kernel (the venv's), so no kernel dialog opens."""
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    spec = nb.setdefault("metadata", {}).get("kernelspec", {})
    if spec.get("name") != "python3":
        nb["metadata"]["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        nb_path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


def _lab_settings() -> dict:
    overrides: dict = {}
    if BINDER_OVERRIDES.is_file():
        overrides = json.loads(BINDER_OVERRIDES.read_text(encoding="utf-8"))
    for plugin, values in TEST_ONLY_SETTINGS.items():
        overrides.setdefault(plugin, {}).update(values)
    return overrides


class JupyterLab:
    """A private JupyterLab server (see the ``jupyter_lab`` fixture)."""

    def __init__(self, base: Path, disabled_extensions: tuple[str, ...] = ()):
        self.base = base
        self.disabled_extensions = disabled_extensions
        self.root = base / "root"
        self.port = _free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self._workspaces = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        dirs = {
            name: self.base / name
            for name in ("config", "data", "runtime", "app-settings", "user-settings",
                         "workspaces", "ipython")
        }
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True, exist_ok=True)
        _copy_notebooks(self.root / "notebooks")

        # The kernel is this interpreter (the venv's python), whatever else is installed.
        kernel_dir = dirs["data"] / "kernels" / "python3"
        kernel_dir.mkdir(parents=True)
        (kernel_dir / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": False},
        }), encoding="utf-8")
        # Exceptions in widget callbacks reach no cell (the kernel logs them, and the log lands
        # in JupyterLab's log console): a startup file also copies every logged error to a file.
        self.kernel_error_log = self.base / "kernel-errors.log"
        startup = dirs["ipython"] / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-deconvlab-browser-tests.py").write_text(
            KERNEL_STARTUP.replace("ERROR_LOG", repr(str(self.kernel_error_log))),
            encoding="utf-8")
        if self.disabled_extensions:  # only to prove the harness notices a missing front end
            (dirs["app-settings"] / "page_config.json").write_text(json.dumps({
                "disabledExtensions": {name: True for name in self.disabled_extensions},
            }), encoding="utf-8")
        (dirs["app-settings"] / "overrides.json").write_text(
            json.dumps(_lab_settings(), indent=2), encoding="utf-8")
        # Server-side: no news feed, no update check, no extension manager talking to PyPI.
        (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps({
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                "extension_manager": "readonly",
            },
        }), encoding="utf-8")

        env = dict(os.environ)
        for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_PREFER_ENV_PATH",
                    "JUPYTERLAB_DIR"):
            env.pop(var, None)
        env.update({
            "JUPYTER_CONFIG_DIR": str(dirs["config"]),
            "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
            "JUPYTERLAB_SETTINGS_DIR": str(dirs["user-settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
            "IPYTHONDIR": str(dirs["ipython"]),
            "JUPYTER_PLATFORM_DIRS": "1",
            # the kernel imports the package from this working tree
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(min(os.cpu_count() or 2, 2))),
        })
        cmd = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.allow_remote_access=False",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.app_settings_dir={dirs['app-settings']}",
            f"--LabApp.user_settings_dir={dirs['user-settings']}",
            f"--LabApp.workspaces_dir={dirs['workspaces']}",
            "--LanguageServerManager.autodetect=False",
            "--MappingKernelManager.default_kernel_name=python3",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers run as root
            cmd.append("--allow-root")
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status = self.api("GET", "/api/status")
                if isinstance(status, dict):
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {SERVER_START_TIMEOUT_S}s:\n"
                           f"{self.log_tail()}")

    def _descendants(self) -> list[int]:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is in the test extras
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            self.shutdown_kernels()
        # Kernels run in their own sessions (jupyter_client uses start_new_session), so note
        # every descendant now and end the leftovers by PID after the server's process group.
        leftovers = self._descendants()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self.proc = None

    # -- helpers ---------------------------------------------------------------------------

    def api(self, method: str, path: str):
        req = urllib.request.Request(
            f"{self.url}{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "/api/sessions") or []:
            self.api("DELETE", f"/api/sessions/{session['id']}")
        for kernel in self.api("GET", "/api/kernels") or []:
            self.api("DELETE", f"/api/kernels/{kernel['id']}")

    def kernel_peak_rss_mb(self, kernel_id: str) -> float | None:
        """Peak resident memory (VmHWM) of a running kernel process, in MB."""
        peak = None
        for pid in self._descendants():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if f"kernel-{kernel_id}.json".encode() not in cmdline:
                    continue
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        mb = int(line.split()[1]) / 1024
                        peak = mb if peak is None else max(peak, mb)
            except OSError:
                continue
        return peak

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def kernel_error_log_size(self) -> int:
        try:
            return self.kernel_error_log.stat().st_size
        except OSError:
            return 0

    def logged_errors(self, offset: int) -> list[str]:
        """Errors the kernels logged since ``offset`` (see KERNEL_STARTUP), last line of each."""
        try:
            with open(self.kernel_error_log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        entries = []
        for line in text.splitlines():
            if line.startswith("    ") and entries:
                entries[-1][1] = line.strip() or entries[-1][1]
            else:
                entries.append([line.strip(), line.strip()])
        return [f"{head} ... {last}"[:400] if last != head else head[:400]
                for head, last in entries
                if not any(benign in head for benign in BENIGN_KERNEL_ERRORS)]

    def kernel_errors(self, offset: int) -> list[str]:
        """Tracebacks the kernels wrote to the log since ``offset`` (one line each)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()
        except OSError:
            return []
        found = []
        for i, line in enumerate(lines):
            if "restarting kernel" in line or "Kernel restarted" in line:
                found.append(f"the kernel died and was restarted: {line.strip()}"[:400])
            elif "Traceback (most recent call last)" in line or "Exception in comm_msg" in line:
                # report the exception line that ends this traceback
                end = next((s for s in lines[i + 1:] if s and not s.startswith((" ", "\t"))),
                           line)
                found.append(f"{line.strip()} ... {end.strip()}"[:400])
        return found

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def lab_url(self, rel_path: str) -> str:
        """The notebook in a fresh JupyterLab workspace: nothing opened earlier is restored
        (the default workspace would reopen, and start kernels for, every earlier notebook)."""
        self._workspaces += 1
        name = f"browser-test-{self._workspaces}"
        return f"{self.url}/lab/workspaces/{name}/tree/{rel_path}?reset&token={self.token}"


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    if not CHROMIUM.exists():
        _unavailable(
            f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium` "
            "(CI does this in .ci/run), or point DECONVLAB_CHROMIUM at a Chromium binary"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Python Playwright is not installed; `pip install -e .[test]`")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_artifacts(tmp_path_factory) -> Path:
    env = os.environ.get("DECONVLAB_BROWSER_ARTIFACTS")
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("browser-artifacts")
    _ARTIFACTS.append(path)
    return path


@pytest.fixture(scope="session")
def jupyter_lab(chromium_executable, tmp_path_factory, browser_artifacts):
    """A JupyterLab server on 127.0.0.1 with a copy of notebooks/ at ``notebooks/``."""
    lab = JupyterLab(tmp_path_factory.mktemp("jupyterlab"))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        with contextlib.suppress(OSError):
            shutil.copy(lab.log_path, browser_artifacts / "jupyterlab.log")


@pytest.fixture(scope="session")
def chromium(chromium_executable):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(chromium_executable), args=CHROMIUM_ARGS, headless=True)
        from importlib.metadata import version

        _VERSIONS["chromium"] = browser.version
        for dist in ("jupyterlab", "ipywidgets", "jupyterlab_widgets", "playwright"):
            with contextlib.suppress(Exception):
                _VERSIONS[dist] = version(dist)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------------------------
# driving a notebook
# --------------------------------------------------------------------------------------------

# All page-side code takes the notebook's path and finds its panel through window.jupyterapp
# (exposed by --LabApp.expose_app_in_browser).
_JS_FIND_PANEL = """
const findPanel = (path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
};
"""

JS_PANEL_READY = _JS_FIND_PANEL + """
(path) => {
  const panel = findPanel(path);
  if (!panel || !panel.context.isReady) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  if (!kernel) return null;
  return kernel.status === 'idle' ? {name: kernel.name, id: kernel.id} : null;
}
"""

JS_RUN_ALL = _JS_FIND_PANEL + """
(path) => {
  const app = window.jupyterapp;
  const panel = findPanel(path);
  app.shell.activateById(panel.id);
  panel.content.activeCellIndex = 0;
  window.__dlRunAll = undefined;
  app.commands.execute('notebook:run-all-cells').then(
    (r) => { window.__dlRunAll = {ok: true, result: r}; },
    (e) => { window.__dlRunAll = {ok: false, result: String(e)}; });
  return true;
}
"""

JS_STATE = _JS_FIND_PANEL + """
([path, widgetMime]) => {
  const panel = findPanel(path);
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const state = {
    runAll: window.__dlRunAll === undefined ? null : window.__dlRunAll,
    kernel: kernel ? kernel.status : 'no kernel',
    codeCells: 0, executed: 0, pending: [], unexecuted: [], errors: [],
    widgetOutputs: 0, widgetViews: 0, widgetProblems: [],
  };
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    state.codeCells += 1;
    const prompt = cell.node.querySelector('.jp-InputArea-prompt');
    const promptText = prompt ? prompt.textContent : '';
    if (promptText.includes('*')) state.pending.push(i);
    if (cell.model.executionCount === null || cell.model.executionCount === undefined) {
      state.unexecuted.push(i);
    } else {
      state.executed += 1;
    }
    const outputs = cell.model.outputs;
    const children = cell.outputArea ? cell.outputArea.widgets : [];
    for (let k = 0; k < outputs.length; k++) {
      const out = outputs.get(k).toJSON();
      if (out.output_type === 'error') {
        state.errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
      }
      if (!(out.data && out.data[widgetMime])) continue;
      // A widget output must render as a widget view: with no (or a mismatched) widget manager
      // it falls back to text/plain ("IntSlider(value=0)"), or shows "Loading widget..." or
      // "Error displaying widget".
      state.widgetOutputs += 1;
      const child = children[k];
      const el = child && child.node.querySelector('.jp-OutputArea-output');
      const text = el ? el.textContent.trim() : '';
      if (el && !el.hasAttribute('data-mime-type') && el.querySelector('.jupyter-widgets') &&
          !text.startsWith('Error displaying widget') && text !== 'Loading widget...') {
        state.widgetViews += 1;
      } else {
        const shown = el ? (el.getAttribute('data-mime-type') || 'widget') + ': ' : '';
        state.widgetProblems.push(`cell ${i}: ${shown}"${text.slice(0, 120)}"`);
      }
    }
  });
  const root = panel.content.node;
  // Errors raised inside widgets (an Output widget capturing a callback's traceback) are in the
  // DOM but not in the cell's outputs; tracebacks render as stderr.
  const stderr = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]';
  root.querySelectorAll('.widget-output ' + stderr).forEach((el) => {
    const text = el.textContent;
    if (text.includes('Traceback (most recent call last)')) {
      state.errors.push('an Output widget: ' + text.trim().slice(0, 400));
    }
  });
  state.sliders = root.querySelectorAll(arguments_sliders).length;
  return state;
}
"""

JS_KERNEL_IDLE = _JS_FIND_PANEL + """
(path) => {
  const panel = findPanel(path);
  const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
  return !!kernel && kernel.status === 'idle';
}
"""

JS_ARM_SLIDER = _JS_FIND_PANEL + """
([path, handleSel]) => {
  const panel = findPanel(path);
  const root = panel.content.node;
  const handle = root.querySelector(handleSel);
  if (!handle) return {ok: false, why: 'no slider handle'};
  const slider = handle.closest('.widget-slider');
  const cell = handle.closest('.jp-Cell');
  const outside = (el) => !el.closest('.widget-slider');
  const viewsIn = (scope) => {
    const imgs = Array.from(scope.querySelectorAll('.jupyter-widgets img')).filter(outside);
    const texts = Array.from(scope.querySelectorAll(
        '.widget-output, .widget-html, .widget-htmlmath, .widget-label, ' +
        '.widget-textarea textarea, .widget-text input'))
        .filter(outside);
    return {imgs, texts};
  };
  let scope = cell.querySelector('.jp-Cell-outputArea') || cell;
  let scopeName = 'cell';
  let views = viewsIn(scope);
  if (views.imgs.length + views.texts.length === 0) {
    scope = root; scopeName = 'notebook'; views = viewsIn(scope);
  }
  if (views.imgs.length + views.texts.length === 0) {
    return {ok: false, why: 'slider has no image or text view next to it'};
  }
  const describe = views.imgs.length ? `img (${scopeName})` : `text (${scopeName})`;
  const signature = () => {
    const v = viewsIn(scope);
    const text = (t) => (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA') ? t.value : t.textContent;
    return v.imgs.map((i) => i.getAttribute('src') || '').join('|') + '#' + v.texts.map(text).join('|');
  };
  const before = signature();
  const valueOf = () => handle.getAttribute('aria-valuenow') ||
      (slider.querySelector('.widget-readout') || {}).textContent || '';
  const w = {t0: null, t1: null, before, valueBefore: valueOf(), valueAfter: null};
  window.__dlWatch = w;
  document.addEventListener('keydown', (ev) => {
    if (w.t0 === null && ev.target === handle) w.t0 = performance.now();
  }, {capture: true, once: true});
  const check = () => {
    if (w.t1 !== null || w.t0 === null) return;
    if (signature() !== w.before) { w.t1 = performance.now(); w.valueAfter = valueOf(); }
  };
  const obs = new MutationObserver(check);
  obs.observe(scope, {subtree: true, childList: true, attributes: true, characterData: true});
  const poll = () => { check(); if (w.t1 === null) requestAnimationFrame(poll); else obs.disconnect(); };
  requestAnimationFrame(poll);
  handle.setAttribute('data-dl-slider', '1');
  handle.scrollIntoView({block: 'center'});
  const now = Number(handle.getAttribute('aria-valuenow'));
  const max = Number(handle.getAttribute('aria-valuemax'));
  const atMax = handle.hasAttribute('aria-valuemax') && now >= max;
  return {ok: true, view: describe, key: atMax ? 'ArrowLeft' : 'ArrowRight'};
}
"""


def _js(template: str) -> str:
    return template.replace("arguments_sliders", json.dumps(SLIDER_HANDLES))


@dataclass
class NotebookRun:
    report: NotebookReport
    state: dict

    def problems(self) -> list[str]:
        return list(self.report.problems)

    def assert_ok(self) -> None:
        problems = self.problems()
        assert not problems, (
            f"{self.report.notebook} in the browser (screenshot: {self.report.screenshot}):\n  "
            + "\n  ".join(problems)
        )


def _wait(page, predicate, timeout_s: float, interval_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    value = predicate()
    while not value and time.monotonic() < deadline:
        page.wait_for_timeout(interval_s * 1000)
        value = predicate()
    return value


class NotebookDriver:
    """Opens notebooks in Chromium, runs them from the front end and exercises the first slider."""

    def __init__(self, lab: JupyterLab, browser, artifacts: Path):
        self.lab = lab
        self.browser = browser
        self.artifacts = artifacts

    def run(self, rel_path: str, exercise_slider: bool = True, record: bool = True,
            settle_timeout_s: float = WIDGET_SETTLE_TIMEOUT_S) -> NotebookRun:
        report = NotebookReport(notebook=rel_path)
        problems = report.problems
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        state: dict = {}
        try:
            page.goto(self.lab.lab_url(rel_path), wait_until="domcontentloaded")
            kernel = _wait(page, lambda: page.evaluate(JS_PANEL_READY, rel_path),
                           NOTEBOOK_OPEN_TIMEOUT_S)
            if not kernel:
                problems.append(f"notebook or kernel not ready after {NOTEBOOK_OPEN_TIMEOUT_S:.0f}s")
                return NotebookRun(report, state)

            log_offset = self.lab.log_size()
            kernel_errors_offset = self.lab.kernel_error_log_size()
            t0 = time.monotonic()
            page.evaluate(JS_RUN_ALL, rel_path)
            js_state = _js(JS_STATE)

            def finished():
                s = page.evaluate(js_state, [rel_path, WIDGET_MIME])
                done = s["runAll"] is not None and s["kernel"] == "idle" and not s["pending"]
                return s if done else None

            state = _wait(page, finished, NOTEBOOK_RUN_TIMEOUT_S) or {}
            report.run_s = round(time.monotonic() - t0, 2)
            if not state:
                state = page.evaluate(js_state, [rel_path, WIDGET_MIME])
                problems.append(
                    f"run-all did not finish within {NOTEBOOK_RUN_TIMEOUT_S:.0f}s "
                    f"(kernel {state['kernel']}, cells still running: {state['pending']})")
            # Let widgets finish rendering ("Loading widget..." is transient).
            settled = _wait(page, lambda: (lambda s: s if (
                not s["widgetProblems"]) else None)(
                    page.evaluate(js_state, [rel_path, WIDGET_MIME])), settle_timeout_s)
            state = settled or page.evaluate(js_state, [rel_path, WIDGET_MIME])
            report.code_cells = state["codeCells"]
            report.executed_cells = state["executed"]
            report.sliders = state["sliders"]
            if state["unexecuted"]:
                problems.append(f"code cells not executed: {state['unexecuted']}")
            problems.extend(f"error output in {e}" for e in state["errors"])
            problems.extend(f"widget did not render in {p}" for p in state["widgetProblems"])
            if state["widgetProblems"]:
                problems.append("(is the @jupyter-widgets/jupyterlab-manager extension installed, "
                                "enabled and matching the kernel's ipywidgets?)")
            if state.get("runAll") and not state["runAll"]["ok"]:
                problems.append(f"run-all command failed: {state['runAll']['result']}")

            if exercise_slider and state["sliders"]:
                self._move_slider(page, rel_path, report)
                after = page.evaluate(js_state, [rel_path, WIDGET_MIME])
                problems.extend(f"error output after moving the slider, in {e}"
                                for e in after["errors"] if e not in state["errors"])
            # An exception in a widget callback (e.g. a slider's observer) reaches no cell: the
            # kernel logs it to its stderr, which is the server's log.
            problems.extend(f"kernel log: {line}" for line in self.lab.kernel_errors(log_offset))
            problems.extend(f"kernel logged an error: {entry}"
                            for entry in self.lab.logged_errors(kernel_errors_offset))
            report.kernel_peak_rss_mb = self.lab.kernel_peak_rss_mb(kernel["id"])
            problems.extend(f"uncaught error in the page: {e}" for e in page_errors)
        finally:
            shot = self.artifacts / (rel_path.replace("/", "__") + ".png")
            with contextlib.suppress(Exception):
                page.screenshot(path=str(shot))
                report.screenshot = str(shot)
            context.close()
            with contextlib.suppress(Exception):
                self.lab.shutdown_kernels()
            if record:
                _REPORTS.append(report)
        return NotebookRun(report, state)

    def _move_slider(self, page, rel_path: str, report: NotebookReport) -> None:
        """Move the first slider SLIDER_MOVES times with the keyboard; each move must change its
        view within SLIDER_TIMEOUT_S. Records the median round trip (key press -> new view)."""
        rtts = []
        for move in range(SLIDER_MOVES):
            armed = page.evaluate(JS_ARM_SLIDER, [rel_path, SLIDER_HANDLES])
            if not armed["ok"]:
                report.problems.append(f"first slider: {armed['why']}")
                return
            report.slider_view = armed["view"]
            handle = page.locator('[data-dl-slider="1"]')
            handle.focus()
            handle.press(armed["key"])
            deadline = time.monotonic() + SLIDER_TIMEOUT_S + 0.5
            watch = page.evaluate("() => window.__dlWatch")
            while watch["t1"] is None and time.monotonic() < deadline:
                page.wait_for_timeout(10)
                watch = page.evaluate("() => window.__dlWatch")
            if watch["t0"] is None:
                report.problems.append("first slider: the key press never reached its handle")
                return
            if watch["t1"] is None:
                report.problems.append(
                    f"first slider, move {move + 1}: {armed['key']} did not change its view "
                    f"({armed['view']}, value {watch['valueBefore']}) within "
                    f"{SLIDER_TIMEOUT_S:.0f} s")
                return
            rtt = watch["t1"] - watch["t0"]
            rtts.append(round(rtt, 1))
            if rtt > SLIDER_TIMEOUT_S * 1000:
                report.problems.append(
                    f"first slider, move {move + 1}: view changed after {rtt:.0f} ms "
                    f"(limit {SLIDER_TIMEOUT_S:.0f} s)")
            # let this move's redraw finish before the next one
            _wait(page, lambda: page.evaluate(JS_KERNEL_IDLE, rel_path), 30, 0.05)
            page.wait_for_timeout(100)
        report.slider_round_trip_ms = statistics.median(rtts)
        report.slider_round_trip_ms_all = rtts


@pytest.fixture(scope="session")
def notebook_driver(jupyter_lab, chromium, browser_artifacts) -> NotebookDriver:
    return NotebookDriver(jupyter_lab, chromium, browser_artifacts)


@pytest.fixture
def driver_without_widget_manager(chromium, tmp_path, browser_artifacts) -> NotebookDriver:
    """A second server whose JupyterLab has the ipywidgets front end disabled (harness test)."""
    lab = JupyterLab(tmp_path, disabled_extensions=("@jupyter-widgets/jupyterlab-manager",))
    try:
        lab.start()
        yield NotebookDriver(lab, chromium, browser_artifacts)
    finally:
        lab.stop()
