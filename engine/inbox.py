"""The caught-mail inbox page: what every demo person received, links clickable, attachments to open.

It exists only where mail is caught (Settings.catches_mail: never in production). Everything here reads the
maildir and changes nothing in it; a message is found only by one of the maildir's own keys, so no address
reaches a file outside it.
"""

from __future__ import annotations

import mailbox
import mimetypes
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.settings import get_settings

# What a browser shows itself and cannot run: served as the mail says, for the reader to open in place.
_SHOWN = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
# A type a browser would run, style or render as a page. The mail's HTML is shown inline under the gateway's
# `script-src 'self'`: an attachment served as script from this origin would run there, one served as a page
# would run as this origin. Served as plain bytes instead, always downloaded.
_ACTIVE = re.compile(r"script|html|css|svg|wasm|xsl|[/+]xml$")
# Shown in place: a document of its own origin, without scripts, plugins or forms. Not for a PDF: Chromium's
# viewer does not open one in a sandboxed document.
_SANDBOX = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\%]')


@dataclass(frozen=True)
class Attachment:
    number: int  # its place among the message's attachments, from 1: the <n> of /inbox/<key>/attachment/<n>
    name: str
    content_type: str
    content: bytes = field(repr=False)
    charset: str | None = None
    content_id: str | None = None
    in_message: bool = False  # an inline image the HTML shows by its cid:

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def media_type(self) -> str:
        """The Content-Type it is served with: the mail's own, unless a browser would run it."""
        if _ACTIVE.search(self.content_type):
            return "application/octet-stream"
        if self.content_type.startswith("text/"):
            return f"{self.content_type}; charset={self.charset or 'utf-8'}"
        return self.content_type

    @property
    def shown_in_place(self) -> bool:
        return self.content_type in _SHOWN

    def disposition(self, download: bool = False) -> str:
        """Content-Disposition: its file name as sent (RFC 6266), an ASCII stand-in for old readers."""
        kind = "inline" if self.shown_in_place and not download else "attachment"
        fallback = _UNSAFE_IN_QUOTES.sub("_", self.name)
        return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(self.name, safe='')}"


@dataclass
class CaughtMail:
    key: str
    to: str
    subject: str
    received: datetime | None
    html: str
    text: str
    inline: dict[str, tuple[str, bytes]] = field(default_factory=dict, repr=False)
    attachments: list[Attachment] = field(default_factory=list, repr=False)


_CID = re.compile(r'(src=["\'])cid:([^"\']+)')


def _file_name(raw: str | None, number: int, content_type: str) -> str:
    """The name the mail gives a part, without folders or control characters; one made up when it has none."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", (raw or "").replace("\\", "/")).rsplit("/", 1)[-1].strip()
    if name in ("", ".", ".."):
        name = f"attachment-{number}{mimetypes.guess_extension(content_type) or ''}"
    return name


def _attachments(message: EmailMessage, bodies: list[MIMEPart | None], html: str) -> list[Attachment]:
    """Every part that is not the text or HTML the reader sees: files, and the pictures the HTML embeds."""
    shown = {id(body) for body in bodies if body is not None}
    referenced = {content_id for _, content_id in _CID.findall(html)}
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart() or id(part) in shown:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        content_type = part.get_content_type()
        content_id = str(part["Content-ID"]).strip().strip("<>") if part["Content-ID"] else None
        number = len(found) + 1
        found.append(Attachment(number=number, name=_file_name(part.get_filename(), number, content_type),
                                content_type=content_type, content=payload, charset=part.get_content_charset(),
                                content_id=content_id, in_message=content_id in referenced))
    return found


def with_inline_images(mail: CaughtMail) -> str:
    """The mail's HTML with `cid:` images pointing at the inbox, as a mail client would show them."""
    return _CID.sub(lambda m: f"{m.group(1)}/inbox/{quote(mail.key)}/cid/{quote(m.group(2))}", mail.html)


def _received(date: object) -> datetime | None:
    """When it was sent, by its Date header; None for a header missing or unreadable (a sender's mistake must
    not take the inbox down). A date without its zone is read as UTC, so every message sorts with the others."""
    try:
        moment = parsedate_to_datetime(str(date)) if date else None
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _parse(key: str, raw: bytes) -> CaughtMail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(("html",))
    text_part = message.get_body(("plain",))
    html = html_part.get_content() if html_part is not None else ""
    attachments = _attachments(message, [html_part, text_part], html)
    return CaughtMail(
        key=key, to=str(message.get("X-Envelope-To") or message.get("To") or ""),
        subject=str(message.get("Subject") or ""), received=_received(message.get("Date")),
        html=html, text=text_part.get_content() if text_part is not None else "",
        inline={a.content_id: (a.content_type, a.content) for a in attachments if a.content_id},
        attachments=attachments,
    )


def _box() -> mailbox.Maildir | None:
    directory = get_settings().mailbox_dir
    return mailbox.Maildir(directory, create=False) if directory.exists() else None


def _addressed_to(found: list[CaughtMail], to: str | None) -> list[CaughtMail]:
    return [m for m in found if to.lower() in m.to.lower()] if to else found


def messages(to: str | None = None) -> list[CaughtMail]:
    """Every caught message, newest first; `to` keeps only one recipient's."""
    box = _box()
    if box is None:
        return []
    found = _addressed_to([_parse(key, box.get_bytes(key)) for key in box.iterkeys()], to)
    return sorted(found, key=lambda m: (m.received or datetime.min.replace(tzinfo=UTC), m.key), reverse=True)


def message(key: str) -> CaughtMail | None:
    """The message the maildir keeps under exactly this key, or None: the key is never made into a path."""
    box = _box()
    if box is None or key not in set(box.iterkeys()):
        return None
    try:
        return _parse(key, box.get_bytes(key))
    except KeyError:  # gone since the listing
        return None


def routes(page: Callable[..., Response]) -> list[Route]:
    async def index(request: Request) -> Response:
        to = request.query_params.get("to")
        everyone = await run_in_threadpool(messages, None)
        found = _addressed_to(everyone, to)
        return page("inbox.html", {"messages": found, "bodies": {m.key: with_inline_images(m) for m in found},
                                   "to": to or "", "people": sorted({m.to for m in everyone})})

    async def show(request: Request) -> Response:
        key = request.path_params["key"]
        found = await run_in_threadpool(message, key)
        if found is None:
            return page("refused.html", {"title": "No such message", "detail": key}, status=404)
        return page("mail.html", {"mail": found, "html": with_inline_images(found)})

    async def image(request: Request) -> Response:
        key, content_id = request.path_params["key"], request.path_params["cid"]
        found = await run_in_threadpool(message, key)
        part = found.inline.get(content_id) if found else None
        if part is None or not part[0].startswith("image/") or _ACTIVE.search(part[0]):
            return page("refused.html", {"title": "No such image", "detail": content_id}, status=404)
        return Response(part[1], media_type=part[0])

    async def attachment(request: Request) -> Response:
        key, number = request.path_params["key"], request.path_params["number"]
        found = await run_in_threadpool(message, key)
        if found is None:
            return page("refused.html", {"title": "No such message", "detail": key}, status=404)
        if not 1 <= number <= len(found.attachments):
            return page("refused.html", {"title": "No such attachment", "detail": f"{key}/attachment/{number}"},
                        status=404)
        part = found.attachments[number - 1]
        headers = {"Content-Disposition": part.disposition(download="download" in request.query_params)}
        if part.content_type != "application/pdf":
            headers["Content-Security-Policy"] = _SANDBOX
        return Response(part.content, media_type=part.media_type, headers=headers)

    def _routes() -> list[Any]:
        return [Route("/inbox", index), Route("/inbox/{key}", show), Route("/inbox/{key}/cid/{cid:path}", image),
                Route("/inbox/{key}/attachment/{number:int}", attachment)]

    return _routes()
