"""`python -m engine.die_with_parent PARENT_PID SIGNAL USER COMMAND...`: run COMMAND, as USER unless it is `-`, so
that it gets SIGNAL (unless 0) when PARENT dies.

`ops up` starts its children through this, so a kill -9 of `ops up` takes the Prefect server, `ops serve` and the
database with it instead of leaving them running. Linux's parent-death signal survives exec; it is set here rather
than in a preexec_fn because `ops up` has threads by the time it restarts a child, and a preexec_fn is unsafe then.
Elsewhere the command is simply run; the stack record still lets the next `ops up` find what was left.
The user is switched here, before the signal is armed, because Linux disarms it when a process changes user.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def kill_group_when_orphaned(parent: int, grace: float) -> None:
    """Kill this process's group (its flow runs too) `grace` seconds after `parent` is gone.

    For `ops serve`, which must not stop gracefully (engine.stack._spawn_serve says why): a parent-death signal
    would reach this process alone, and a SIGTERM starts the graceful stop.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        time.sleep(grace)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def main(argv: list[str]) -> None:
    parent, sig, user, command = int(argv[0]), int(argv[1]), argv[2], argv[3:]
    if user != "-":
        import pwd

        entry = pwd.getpwnam(user)
        os.initgroups(user, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    if sig and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the signal was armed
            sys.exit(1)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
