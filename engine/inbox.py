"""The caught-mail inbox page: what every demo person received, links clickable."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.settings import get_settings


@dataclass
class CaughtMail:
    key: str
    to: str
    subject: str
    received: datetime | None
    html: str
    text: str


def _parse(key: str, raw: bytes) -> CaughtMail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    date = message.get("Date")
    return CaughtMail(
        key=key, to=str(message.get("X-Envelope-To") or message.get("To") or ""),
        subject=str(message.get("Subject") or ""), received=parsedate_to_datetime(date) if date else None,
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
    )


def messages(to: str | None = None) -> list[CaughtMail]:
    """Every caught message, newest first; `to` keeps only one recipient's."""
    directory = get_settings().mailbox_dir
    if not directory.exists():
        return []
    box = mailbox.Maildir(directory, create=False)
    found = [_parse(key, box.get_bytes(key)) for key in box.iterkeys()]
    if to:
        found = [m for m in found if to.lower() in m.to.lower()]
    return sorted(found, key=lambda m: (m.received or datetime.min.astimezone(), m.key), reverse=True)


def routes(page: Callable[..., Response]) -> list[Route]:
    async def index(request: Request) -> Response:
        to = request.query_params.get("to")
        found = await run_in_threadpool(messages, to)
        people = sorted({m.to for m in await run_in_threadpool(messages, None)})
        return page("inbox.html", {"messages": found, "to": to or "", "people": people})

    async def show(request: Request) -> Response:
        key = request.path_params["key"]
        found = [m for m in await run_in_threadpool(messages, None) if m.key == key]
        if not found:
            return page("refused.html", {"title": "No such message", "detail": key}, status=404)
        return page("mail.html", {"mail": found[0]})

    def _routes() -> list[Any]:
        return [Route("/inbox", index), Route("/inbox/{key}", show)]

    return _routes()
