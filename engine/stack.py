"""The embedded local stack `ops up` starts: Prefect server, deployments, link gateway, mail catcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from engine.settings import Settings


def local_environment(settings: Settings) -> dict[str, str]:
    """Variables every process of the local stack shares; Prefect reads its own only at import."""
    data = settings.data_dir.resolve()
    return {
        "OPS_DATA_DIR": str(data),
        "PREFECT_HOME": str(data / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{settings.prefect_port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(settings.prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(settings.resume_poll_seconds))),
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "INFO",
        # Flows run in processes of their own: they must mail the catcher on whichever port it listens.
        "OPS_MAIL_URL": f"mailto://{settings.smtp_host}:{settings.smtp_port}?from=opsdirector%40localhost&mode=insecure",
    }


_OWNED_BY_THE_STACK = ("PREFECT_HOME", "PREFECT_API_URL", "PREFECT_SERVER_API_HOST", "PREFECT_SERVER_API_PORT")


def apply_local_environment(settings: Settings, *, own_server: bool = False) -> None:
    """Fill in what is not set; with `own_server` (ops up) the stack's own Prefect server always wins."""
    for key, value in local_environment(settings).items():
        if own_server and key in _OWNED_BY_THE_STACK:
            os.environ[key] = value
        else:
            os.environ.setdefault(key, value)


def wait_until_up(url: str, seconds: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f} s")


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    # A session of its own, so stopping it stops everything it started, and nothing is left behind.
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM the process's whole group, SIGKILL it after `grace` seconds."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def run(settings: Settings) -> None:
    """Start everything, print where it is, and stop all of it on Ctrl-C."""
    import uvicorn

    from engine import mailcatcher
    from engine.gateway import create_app

    apply_local_environment(settings, own_server=True)
    logs = settings.data_dir.resolve() / "logs"
    started = time.monotonic()
    children: list[subprocess.Popen[bytes]] = []
    catcher = None
    try:
        server = _spawn([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                         "--port", str(settings.prefect_port)], logs / "prefect-server.log")
        children.append(server)
        catcher = mailcatcher.start(settings.mailbox_dir.resolve(), settings.smtp_host, settings.smtp_port)
        wait_until_up(f"http://127.0.0.1:{settings.prefect_port}/api/health", 120, server)
        children.append(_spawn([sys.executable, "-m", "engine.cli", "serve"], logs / "deployments.log"))
        config = uvicorn.Config(create_app(), host=settings.gateway_host, port=settings.gateway_port,
                                log_level="warning")
        gateway = uvicorn.Server(config)
        print(
            f"opsdirector is up ({time.monotonic() - started:.1f} s)\n"
            f"  Prefect UI      http://127.0.0.1:{settings.prefect_port}\n"
            f"  Link gateway    {settings.gateway_url}\n"
            f"  Inbox           {settings.gateway_url.rstrip('/')}/inbox\n"
            f"  Mail (SMTP)     {settings.smtp_host}:{settings.smtp_port}\n"
            f"  Data and logs   {settings.data_dir.resolve()}\n"
            "Try the quarterly audit end to end: .venv/bin/ops demo (in another terminal);\n"
            "a fire drill at the head office: .venv/bin/ops demo drill.\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        gateway.run()
    finally:
        for child in reversed(children):
            stop_process_group(child)
        if catcher is not None:
            catcher.stop()
        print("opsdirector stopped.", flush=True)
