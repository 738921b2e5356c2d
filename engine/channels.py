"""Where a person's messages go, and the one place that hands them to Apprise.

E-mail is the mass channel (a drill alerts a whole building at once). Apprise opens a new SMTP session and builds a
new TLS context for every message, about 25 ms each, so messages bound for the same mail server share one session
here: Apprise still parses the URL, builds each MIME message and drives the SMTP conversation; only the session is
kept open across the batch. Every other channel is one Apprise notify per message.
"""

from __future__ import annotations

import mimetypes
import smtplib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import apprise
from apprise.plugins.email.base import NotifyEmail
from apprise.plugins.email.smtp import AppriseSMTPController

from engine.settings import get_settings
from engine.templates import Message
from registry import Person

_EMAIL_SCHEMES = ("mailto", "mailtos")
_SMTP_ERRORS = (OSError, smtplib.SMTPException, RuntimeError)


@dataclass(frozen=True)
class Outgoing:
    url: str
    message: Message
    attachments: Sequence[Path] = field(default_factory=tuple)


def targets(person: Person) -> list[str]:
    """The person's Apprise URLs; with none, e-mail through the configured mail server."""
    if person.channels:
        return list(person.channels)
    base = get_settings().mail_url.get_secret_value()
    return [f"{base}{'&' if '?' in base else '?'}to={quote(person.email, safe='@')}"]


def redacted(url: str) -> str:
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    return plugin.url(privacy=True) if plugin is not None else url.split("://", 1)[0] + "://…"


def is_email(url: str) -> bool:
    return url.split("://", 1)[0].lower() in _EMAIL_SCHEMES


def send(url: str, message: Message, attachments: Sequence[Path] = ()) -> str | None:
    """Deliver one message to one channel; the error text (secrets masked) or None on success."""
    return send_all([Outgoing(url, message, tuple(attachments))])[0]


def send_all(batch: Sequence[Outgoing]) -> list[str | None]:
    """Deliver every message; for each, in order, the error text (secrets masked) or None on success."""
    outcomes: list[str | None] = [None] * len(batch)
    by_server: dict[tuple[Any, ...], list[tuple[int, NotifyEmail]]] = {}
    for index, item in enumerate(batch):
        plugin = apprise.Apprise.instantiate(item.url, suppress_exceptions=True)
        if plugin is None:
            outcomes[index] = f"unusable channel URL {redacted(item.url)}"
        elif isinstance(plugin, NotifyEmail) and type(plugin).send is NotifyEmail.send:
            by_server.setdefault(_server_of(plugin), []).append((index, plugin))
        else:
            outcomes[index] = _notify(plugin, item)
    for group in by_server.values():
        for index, outcome in _send_emails([(batch[i], plugin) for i, plugin in group]):
            outcomes[group[index][0]] = outcome
    return outcomes


def _notify(plugin: Any, item: Outgoing) -> str | None:
    email = is_email(item.url)
    attach = _attachments(item.attachments) if item.attachments else None
    with apprise.LogCapture(level=apprise.logging.WARNING) as log:
        delivered = plugin.notify(
            title=item.message.subject,
            body=item.message.html if email else item.message.text,
            body_format=apprise.NotifyFormat.HTML if email else apprise.NotifyFormat.TEXT,
            attach=attach,
        )
        captured = log.getvalue() if hasattr(log, "getvalue") else ""
    if delivered:
        return None
    return (captured.strip() or f"delivery to {plugin.url(privacy=True)} failed")[-500:]


def _server_of(plugin: NotifyEmail) -> tuple[Any, ...]:
    return (plugin.smtp_host, plugin.port, plugin.secure_mode, plugin.user, plugin.password,
            plugin.verify_certificate, plugin.socket_connect_timeout)


def _attachments(paths: Sequence[Path]) -> apprise.AppriseAttachment:
    attach = apprise.AppriseAttachment()
    for path in paths:
        attach.add(str(path))
    return attach


@contextmanager
def _session(plugin: NotifyEmail) -> Iterator[AppriseSMTPController]:
    with AppriseSMTPController(
        host=plugin.smtp_host, port=plugin.port, secure_mode=plugin.secure_mode, user=plugin.user,
        password=plugin.password, verify_certificate=plugin.verify_certificate,
        socket_connect_timeout=plugin.socket_connect_timeout,
    ) as smtp:
        yield smtp


def _prepared(plugin: NotifyEmail, item: Outgoing) -> list[Any]:
    attach = _attachments(item.attachments) if item.attachments else None
    images = any((mimetypes.guess_type(path.name)[0] or "").startswith("image/") for path in item.attachments)
    headers = {"X-Application": plugin.app_id, **plugin.headers, **plugin._protocol_headers(item.message.html)}
    return list(NotifyEmail.prepare_emails(
        subject=item.message.subject, body=item.message.html, notify_format=apprise.NotifyFormat.HTML,
        from_addr=plugin.from_addr, to=plugin.targets, cc=plugin.cc, bcc=plugin.bcc, reply_to=plugin.reply_to,
        smtp_host=plugin.smtp_host, attach=attach, headers=headers, names=plugin.names, pgp=plugin.pgp,
        pgp_mode=plugin.pgp_mode, inline=plugin.inline or images, tzinfo=plugin.tzinfo,
    ))


def _send_emails(group: list[tuple[Outgoing, NotifyEmail]]) -> Iterator[tuple[int, str | None]]:
    """Send a group bound for one server over one SMTP session, reconnecting once if the server drops it."""
    pending = list(enumerate(group))
    reconnected = False
    while pending:
        try:
            with _session(group[0][1]) as smtp:
                while pending:
                    index, (item, plugin) = pending[0]
                    yield index, _send_one(smtp, item, plugin)
                    pending.pop(0)
        except _SMTP_ERRORS as error:
            if reconnected or not pending:
                reason = f"mail server {group[0][1].smtp_host}:{group[0][1].port}: {error}"[-500:]
                for index, _ in pending:
                    yield index, reason
                return
            reconnected = True


def _send_one(smtp: AppriseSMTPController, item: Outgoing, plugin: NotifyEmail) -> str | None:
    with apprise.LogCapture(level=apprise.logging.WARNING) as log:
        try:
            messages = _prepared(plugin, item)
        except Exception as error:  # an unreadable attachment or an unusable address: this message only
            return f"could not prepare the e-mail to {plugin.url(privacy=True)}: {error}"[-500:]
        refused = [m.recipient for m in messages if not smtp.sendmail(plugin.from_addr[1], m.to_addrs, m.body)]
        captured = log.getvalue() if hasattr(log, "getvalue") else ""
    if not refused:
        return None
    if smtp._socket is None or not _alive(smtp):
        raise smtplib.SMTPServerDisconnected(captured.strip() or "connection lost")
    return (captured.strip() or f"the mail server refused {', '.join(map(str, refused))}")[-500:]


def _alive(smtp: AppriseSMTPController) -> bool:
    try:
        return bool(smtp._socket is not None and smtp._socket.noop()[0] == 250)
    except _SMTP_ERRORS:
        return False
