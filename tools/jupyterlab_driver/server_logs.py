"""Errors that reach no notebook cell, read from the server log and the kernels' error log.

An exception in a widget callback (e.g. a slider's observer) is not a cell output: the kernel
writes it to its stderr (the server's log) and, through ``ipython_startup``, to an error log.
"""

from __future__ import annotations

from pathlib import Path

# Errors every kernel logs at start-up with ipywidgets' front end: the widget manager asks for
# comm targets before the notebook has imported ipywidgets.
BENIGN_KERNEL_ERRORS = ("No such comm target registered: jupyter.widget",)


def size(path: Path) -> int:
    """Current size of a log file in bytes (0 if it does not exist yet)."""
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def read_from(path: Path, offset: int) -> str:
    """What was appended to a log file since it was ``offset`` bytes long."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def server_log_problems(text: str) -> list[str]:
    """Kernel restarts and tracebacks in server-log text, one line each (at most 400 chars)."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if "restarting kernel" in line or "Kernel restarted" in line:
            found.append(f"the kernel died and was restarted: {line.strip()}"[:400])
        elif "Traceback (most recent call last)" in line or "Exception in comm_msg" in line:
            # report the exception line that ends this traceback
            end = next((s for s in lines[i + 1 :] if s and not s.startswith((" ", "\t"))), line)
            found.append(f"{line.strip()} ... {end.strip()}"[:400])
    return found


def kernel_error_entries(text: str, benign: tuple[str, ...] = BENIGN_KERNEL_ERRORS) -> list[str]:
    """Entries of the kernels' error log: the first line of each and its last indented line.

    Parameters
    ----------
    text : str
        Error-log text (entries start unindented; continuation lines are indented).
    benign : tuple of str
        Entries whose first line contains one of these are dropped.
    """
    entries: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("    ") and entries:
            entries[-1][1] = line.strip() or entries[-1][1]
        else:
            entries.append([line.strip(), line.strip()])
    return [
        (f"{head} ... {last}" if last != head else head)[:400]
        for head, last in entries
        if not any(b in head for b in benign)
    ]
