"""The record of every process a local stack started, so a later `ops up` or `ops down` can find what is left.

A pid alone is not proof: after a reboot or a long while the same number may belong to something else. A process
counts as ours only while it is alive and its command line is still the one recorded when it was started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RECORD_NAME = "stack.json"


@dataclass(frozen=True)
class StackProcess:
    pid: int
    what: str
    cmdline: list[str]
    # Postgres stops cleanly (fast shutdown) on SIGINT; SIGTERM would wait for every client to leave.
    stop_signal: int = signal.SIGTERM

    def describe(self) -> str:
        return f"pid {self.pid:<7} {self.what}"


def _normalised(args: list[str]) -> str:
    # Postgres rewrites its argv area for `ps`; compare words, not argument boundaries.
    return " ".join(" ".join(args).split())


def command_line(pid: int) -> list[str] | None:
    """The process's command line, or None when it is gone or a zombie."""
    proc = Path("/proc") / str(pid)
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
        return (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    except PermissionError:
        return []


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, theirs, and so on), found by parent in /proc: a process that
    started its own session (Prefect's flow runs do) is outside its parent's group but still below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def is_alive(process: StackProcess) -> bool:
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by another user (postgres runs as its own user when we are root)
    if not Path("/proc").is_dir():  # no /proc (macOS): the pid is all there is to go on
        return True
    found = command_line(process.pid)
    # Ends with, not equals: for a moment after it starts, the process is still the die_with_parent launcher.
    return found is not None and (found == [] or _normalised(found).endswith(_normalised(process.cmdline)))


class StackRecord:
    """stack.json in the data directory: rewritten whole (write then rename) each time a process starts."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / RECORD_NAME
        self.processes: list[StackProcess] = []

    def read(self) -> list[StackProcess]:
        try:
            entries = json.loads(self.path.read_text())["processes"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return []
        return [StackProcess(**entry) for entry in entries]

    def alive(self) -> list[StackProcess]:
        return [process for process in self.read() if is_alive(process)]

    def add(self, process: StackProcess) -> None:
        self.processes = [p for p in self.processes if p.what != process.what] + [process]
        self._write()

    def clear(self) -> None:
        self.processes = []
        self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".json.partial")
        partial.write_text(json.dumps({"processes": [asdict(p) for p in self.processes]}, indent=1))
        partial.replace(self.path)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        # As the servers bind: connections of a stopped stack still in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def stop(processes: list[StackProcess], grace: float = 15) -> list[StackProcess]:
    """Stop each process (its group too when it leads one), `ops up` first so it can stop its own children.

    Returns those that had to be killed with SIGKILL after `grace` seconds.
    """
    killed = []
    for process in sorted(processes, key=lambda p: p.what != "ops up"):
        if not is_alive(process):
            continue
        _signal(process, process.stop_signal)
        deadline = time.monotonic() + grace
        while is_alive(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if is_alive(process):
            _signal(process, signal.SIGKILL)
            killed.append(process)
    return killed


def _signal(process: StackProcess, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, sig)
        else:
            os.kill(process.pid, sig)
