"""Playing people against the running local stack, as their browsers would: open a link (GET), read its form,
answer it (POST). Demo stories use it; the tests have their own (tests/links.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from html import unescape
from typing import TypeVar

import httpx

from engine import inbox
from engine.settings import get_settings

T = TypeVar("T")
LINK = re.compile(r'href="(https?://[^"]+/s/[A-Za-z0-9_\-]+)"')


def links_in(html: str) -> list[str]:
    return [unescape(u) for u in LINK.findall(html)]


def answer_link(client: httpx.Client, url: str, fields: dict[str, str],
                files: dict[str, tuple[str, bytes]] | None = None) -> httpx.Response:
    """Open a link and submit its form with `fields`, as a person's browser would."""
    page = client.get(url)
    page.raise_for_status()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return client.post(url, data={**hidden, **fields}, files=files or None)


def wait_for(what: str, probe: Callable[[], T | None], seconds: float, every: float = 0.5) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise SystemExit(f"gave up waiting for {what} after {seconds:.0f} s")


def new_mail(seen: set[str], subject_prefix: str) -> list[inbox.CaughtMail]:
    return [m for m in inbox.messages() if m.key not in seen and m.subject.startswith(subject_prefix)]


def run_state(client: httpx.Client, api: str, run_id: str) -> str:
    return str(client.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"])


def reachable_stack() -> tuple[httpx.Client, str]:
    """An HTTP client and the Prefect API of the running local stack; exits with advice when it is not up."""
    settings = get_settings()
    api = f"http://127.0.0.1:{settings.prefect_port}/api"
    http = httpx.Client(timeout=30)
    try:
        http.get(f"{settings.gateway_url}/healthz").raise_for_status()
        http.get(f"{api}/health").raise_for_status()
    except httpx.HTTPError:
        raise SystemExit("the local stack is not running: start it with `make run` in another terminal") from None
    return http, api
