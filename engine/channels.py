"""Where a person's messages go, and the one place that hands them to Apprise.

E-mail is the mass channel (a drill alerts a whole building at once). Apprise opens a new SMTP session and builds a
new TLS context for every message, about 25 ms each, so messages bound for the same mail server share one session
here: Apprise still parses the URL, builds each MIME message and drives the SMTP conversation; only the session is
kept open across the batch. Every other channel is one Apprise notify per message.

Each outcome is reported the moment it is known (`deliver` is a generator), so the caller can record a message as
sent as soon as its server accepts it: a crash mid-batch then repeats at most the message in flight. An outcome
says whether a copy may have left: an e-mail whose data reached the server but whose reply never came may be in
the reader's inbox, and so may a chat message Apprise reports as failed (it cannot tell a refused connection from
a lost reply); the links in such a copy must stay valid.
"""

from __future__ import annotations

import mimetypes
import re
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


@dataclass(frozen=True)
class Outcome:
    """None as error is accepted by the server; otherwise why not, and whether a copy may still have left."""

    error: str | None = None
    may_have_left: bool = False

    @property
    def sent(self) -> bool:
        return self.error is None


def _failed(error: str, *, may_have_left: bool = False) -> Outcome:
    return Outcome(error[-500:], may_have_left)


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
    for index, outcome in deliver(batch):
        outcomes[index] = outcome.error
    return outcomes


def deliver(batch: Sequence[Outgoing]) -> Iterator[tuple[int, Outcome]]:
    """Deliver every message, yielding (index in `batch`, outcome) as each outcome becomes known."""
    by_server: dict[tuple[Any, ...], list[tuple[int, NotifyEmail]]] = {}
    for index, item in enumerate(batch):
        plugin = apprise.Apprise.instantiate(item.url, suppress_exceptions=True)
        if plugin is None:
            yield index, _failed(f"unusable channel URL {redacted(item.url)}")
        elif isinstance(plugin, NotifyEmail) and type(plugin).send is NotifyEmail.send:
            by_server.setdefault(_server_of(plugin), []).append((index, plugin))
        else:
            error = _notify(plugin, item)
            yield index, Outcome() if error is None else _failed(error, may_have_left=True)
    for group in by_server.values():
        for index, outcome in _send_emails([(batch[i], plugin) for i, plugin in group]):
            yield group[index][0], outcome


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


class _Uncertain(Exception):
    """The data reached the server but its reply did not: the message may have been stored."""


def _send_emails(group: list[tuple[Outgoing, NotifyEmail]]) -> Iterator[tuple[int, Outcome]]:
    """Send a group bound for one server over one SMTP session, reconnecting when the server drops it.

    A message whose reply was lost is not sent again here (the caller retries it later, keeping its links):
    re-sending it on the new session would put a second copy in an inbox that most likely has one. A session
    that delivered something before it dropped is reopened for the rest; one that delivered nothing, once.
    """
    pending = list(enumerate(group))
    server = f"mail server {group[0][1].smtp_host}:{group[0][1].port}"
    fruitless = 0
    while pending:
        delivered = False
        try:
            with _session(group[0][1]) as smtp:
                while pending:
                    index, (item, plugin) = pending[0]
                    try:
                        outcome = _send_one(smtp, item, plugin)
                    except _Uncertain as lost:
                        pending.pop(0)
                        yield index, _failed(f"{server}: no reply after the message was sent ({lost}); it may "
                                             "have been delivered", may_have_left=True)
                        raise smtplib.SMTPServerDisconnected(str(lost)) from None
                    pending.pop(0)
                    delivered = delivered or outcome.sent
                    yield index, outcome
        except _SMTP_ERRORS as error:
            fruitless = 0 if delivered else fruitless + 1
            if fruitless >= 2 or not pending:
                for index, _ in pending:
                    yield index, _failed(f"{server}: {error}")
                return


def _send_one(smtp: AppriseSMTPController, item: Outgoing, plugin: NotifyEmail) -> Outcome:
    try:
        messages = _prepared(plugin, item)
    except Exception as error:  # an unreadable attachment or an unusable address: this message only
        return _failed(f"could not prepare the e-mail to {plugin.url(privacy=True)}: {error}")
    assert smtp._socket is not None
    refused: list[str] = []
    left = False
    for message in messages:
        refusal = _transmit(smtp._socket, plugin.from_addr[1], message.to_addrs, message.body)
        if refusal is None:
            left = True
        else:
            refused.append(f"{message.recipient}: {refusal}")
    if not refused:
        return Outcome()
    return _failed(f"the mail server refused {'; '.join(refused)}", may_have_left=left)


_CRLF_ENDINGS = re.compile(r"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _transmit(conn: smtplib.SMTP, sender: str, recipients: Sequence[str], body: str) -> str | None:
    """smtplib's sendmail, telling a refusal (the reason, returned) from a reply lost after the data went.

    Any error before the final dot was sent means the server cannot have stored the message: it is raised as
    the SMTP error it is. After it, a lost connection raises _Uncertain.
    """
    conn.ehlo_or_helo_if_needed()
    options = ["SMTPUTF8", "BODY=8BITMIME"] if not body.isascii() and conn.has_extn("smtputf8") else []
    code, reply = conn.mail(sender, options)
    if code != 250:
        conn.rset()
        return f"{code} {reply.decode(errors='replace')}"
    accepted = [r for r in recipients if conn.rcpt(r)[0] in (250, 251)]
    if not accepted:
        conn.rset()
        return "every recipient refused"
    code, reply = conn.docmd("data")
    if code != 354:
        conn.rset()
        return f"{code} {reply.decode(errors='replace')}"
    data = _LEADING_DOT.sub(b"..", _CRLF_ENDINGS.sub("\r\n", body).encode("utf-8"))
    conn.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    try:
        code, reply = conn.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as lost:
        raise _Uncertain(str(lost) or type(lost).__name__) from lost
    if code != 250:
        return f"{code} {reply.decode(errors='replace')}"
    if len(accepted) < len(recipients):
        return f"refused {', '.join(r for r in recipients if r not in accepted)}"
    return None
