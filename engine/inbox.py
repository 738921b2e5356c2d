"""The caught-mail inbox page: what every demo person received, links clickable."""

from __future__ import annotations

import mailbox
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

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
    inline: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)


_CID = re.compile(r'(src=["\'])cid:([^"\']+)')


def _inline_parts(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    """Parts an HTML body refers to as `cid:` (charts in a report): content id → (MIME type, bytes)."""
    found: dict[str, tuple[str, bytes]] = {}
    for part in message.walk():
        content_id = part.get("Content-ID")
        if content_id and not part.is_multipart():
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                found[str(content_id).strip().strip("<>")] = (part.get_content_type(), payload)
    return found


def with_inline_images(mail: CaughtMail) -> str:
    """The mail's HTML with `cid:` images pointing at the inbox, as a mail client would show them."""
    return _CID.sub(lambda m: f"{m.group(1)}/inbox/{quote(mail.key)}/cid/{quote(m.group(2))}", mail.html)


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
        inline=_inline_parts(message),
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
        return page("inbox.html", {"messages": found, "bodies": {m.key: with_inline_images(m) for m in found},
                                   "to": to or "", "people": people})

    async def show(request: Request) -> Response:
        key = request.path_params["key"]
        found = [m for m in await run_in_threadpool(messages, None) if m.key == key]
        if not found:
            return page("refused.html", {"title": "No such message", "detail": key}, status=404)
        return page("mail.html", {"mail": found[0], "html": with_inline_images(found[0])})

    async def image(request: Request) -> Response:
        key, content_id = request.path_params["key"], request.path_params["cid"]
        found = [m for m in await run_in_threadpool(messages, None) if m.key == key]
        part = found[0].inline.get(content_id) if found else None
        if part is None or not part[0].startswith("image/"):
            return page("refused.html", {"title": "No such image", "detail": content_id}, status=404)
        return Response(part[1], media_type=part[0])

    def _routes() -> list[Any]:
        return [Route("/inbox", index), Route("/inbox/{key}", show), Route("/inbox/{key}/cid/{cid:path}", image)]

    return _routes()
