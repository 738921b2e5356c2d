"""Where a person's messages go, and the one place that hands them to Apprise.

E-mail is the mass channel (a drill alerts a whole building at once), so e-mail through Apprise's own SMTP plugin
is sent here rather than by one Apprise `notify` per message (a new SMTP session and TLS context each, a fresh URL
parse, a MIME message built with Apprise's header folding: about 25 ms a message). What of Apprise stays: the
parse of each distinct channel URL (once per batch: mail URLs differ only in their `to=`, read with Apprise's
address parser), the server, port, security mode, credentials and sender it yields, its SMTP controller for the
connection, STARTTLS/SSL and login, and its MIME builder for anything but a plain message (attachments, PGP, Cc,
Bcc, Reply-To). A plain message is built with the standard library, its text part the text the template wrote.
Messages bound for one server share one SMTP session; every other channel is one Apprise notify per message.

Each outcome is reported the moment it is known (`deliver` is a generator), so the caller can record a message as
sent as soon as its server accepts it: a crash mid-batch then repeats at most the message in flight. An outcome
says whether a copy may have left: an e-mail whose data reached the server but whose reply never came may be in
the reader's inbox, and so may a chat message Apprise reports as failed (it cannot tell a refused connection from
a lost reply); the links in such a copy must stay valid.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import mimetypes
import re
import secrets
import smtplib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.policy import SMTP
from email.utils import format_datetime, formataddr, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.plugins.email.base import PGP_MODE_DEFAULT, NotifyEmail
from apprise.plugins.email.smtp import AppriseSMTPController, SMTPSecureMode
from apprise.utils.parse import is_email as is_address
from apprise.utils.parse import parse_emails

from engine.settings import get_settings
from engine.templates import Message
from registry import Person

_EMAIL_SCHEMES = ("mailto", "mailtos")
_REGISTRY = NotificationManager()  # Apprise's plugin registry (one per process): true once its plugins are loaded
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


def deliver(batch: Iterable[Outgoing]) -> Iterator[tuple[int, Outcome]]:
    """Deliver every message, yielding (index in `batch`, outcome) as each outcome becomes known.

    `batch` is read one message ahead: the next message is taken (and its e-mail built) while the mail server
    stores the current one, so a lazily prepared batch costs little more than the server's own time. Nothing is
    sent before the caller has had the previous outcome: at most one message is ever in flight.
    """
    items = enumerate(batch)
    plugins = _Plugins()
    servers: dict[tuple[Any, ...], _Server] = {}
    ahead: list[_Ready] = []

    def take() -> _Ready | None:
        for index, item in items:
            return _ready(index, item, plugins)
        return None

    def read_ahead() -> None:
        if not ahead and (following := take()) is not None:
            ahead.append(following)

    try:
        while (current := ahead.pop() if ahead else take()) is not None:
            if current.plugin is None:
                yield current.index, _failed(f"unusable channel URL {redacted(current.item.url)}")
            elif current.recipients is None:
                error = _notify(current.plugin, current.item)
                yield current.index, Outcome() if error is None else _failed(error, may_have_left=True)
            else:
                key = _server_of(current.plugin)
                server = servers.get(key) or servers.setdefault(key, _Server(current.plugin))
                outcome = server.send(current, read_ahead)
                if ahead and ahead[0].plugin is not None and ahead[0].recipients is not None \
                        and _server_of(ahead[0].plugin) == key:
                    # The next message's envelope (MAIL, RCPT, DATA, pipelined) goes before this outcome is
                    # handed over: the caller commits it while the server answers. No data leaves before that
                    # commit.
                    server.announce(ahead[0])
                yield current.index, outcome
    finally:
        for server in servers.values():
            server.close()


class _Plugins:
    """Apprise's parse of each distinct channel URL, once per batch.

    Mail URLs differ only in their `to=` from one person to the next, so the server part is parsed once and each
    message's recipients are read from its `to=` with Apprise's own address parser.
    """

    def __init__(self) -> None:
        self.asset = apprise.AppriseAsset()
        self.parsed: dict[tuple[str, bool], Any] = {}

    def get(self, url: str) -> tuple[Any, list[tuple[str | bool, str]] | None]:
        """The plugin, and the recipients when it is plain e-mail this module sends itself (else None)."""
        base, to = _split_to(url) if is_email(url) else (url, None)
        key = (base, to is not None)
        if key not in self.parsed:
            plugin = _instantiate(base, self.asset)
            path_targets = isinstance(plugin, NotifyEmail) and bool(NotifyEmail.parse_url(base)["targets"])
            self.parsed[key] = None if to is not None and path_targets else plugin
        plugin = self.parsed[key]
        if plugin is None and to is not None:  # a URL naming recipients in its path as well: parsed whole
            plugin = _instantiate(url, self.asset)
            to = None
        if not isinstance(plugin, NotifyEmail) or not _plain_email(plugin):
            return plugin, None
        if to is None:
            return plugin, list(plugin.targets)
        found = [is_address(address) for address in parse_emails(to)]
        return plugin, [(f["name"] or False, f["full_email"]) for f in found if f]


def _instantiate(url: str, asset: apprise.AppriseAsset) -> Any:
    """`apprise.Apprise.instantiate(url)`, without importing every Apprise plugin for an e-mail URL.

    Apprise finds a URL's plugin by importing all of its hundred-odd plugin modules on first use: 0.2 s of CPU,
    0.5-1.5 s of a drill's first alert while the roster is asked in another thread. Until they are loaded no other
    plugin can have taken the mail schemes (registering one loads them first), so those are Apprise's own e-mail
    plugin's, built here as `instantiate` builds it; every other URL, and every URL once they are loaded, goes
    through `instantiate`.
    """
    schema = url.split("://", 1)[0].strip().lower()
    if schema not in _EMAIL_SCHEMES or _REGISTRY or not NotifyEmail.enabled:
        return apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    results = NotifyEmail.parse_url(url.replace("/#", "/%23"))  # as apprise.plugins.url_to_dict reads it
    if not results:
        return None
    try:
        plugin = NotifyEmail(**{**results, "tag": set(), "asset": asset})
    except Exception:  # as instantiate(suppress_exceptions=True): an unusable URL is None
        return None
    return plugin if plugin.enabled else None


def _split_to(url: str) -> tuple[str, str | None]:
    """The URL without its `to=` query parameter, and that parameter's value (None without exactly one)."""
    head, sep, query = url.partition("?")
    pairs = query.split("&") if sep else []
    tos = [i for i, pair in enumerate(pairs) if pair.lower().startswith("to=")]
    if len(tos) != 1:
        return url, None
    rest = pairs[:tos[0]] + pairs[tos[0] + 1:]
    return (f"{head}?{'&'.join(rest)}" if rest else head), unquote(pairs[tos[0]][3:])


def _plain_email(plugin: Any) -> bool:
    """An e-mail plugin whose sending this module can do itself: Apprise's own SMTP e-mail, nothing overridden."""
    return (isinstance(plugin, NotifyEmail) and type(plugin).send is NotifyEmail.send
            and type(plugin)._protocol_headers is NotifyEmail._protocol_headers)


@dataclass
class _Ready:
    index: int
    item: Outgoing
    plugin: Any
    recipients: list[tuple[str | bool, str]] | None  # None: not an e-mail sent here
    built: list[tuple[str, list[str], bytes | str]] | Exception | None = None  # (recipient, envelope, data)


def _ready(index: int, item: Outgoing, plugins: _Plugins) -> _Ready:
    plugin, recipients = plugins.get(item.url)
    ready = _Ready(index, item, plugin, recipients)
    if recipients is not None:
        try:
            ready.built = _build(plugin, item, recipients)
        except Exception as error:  # an unreadable attachment or an unusable address: this message only
            ready.built = error
    return ready


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


def _build(plugin: NotifyEmail, item: Outgoing,
           recipients: list[tuple[str | bool, str]]) -> list[tuple[str, list[str], bytes | str]]:
    """Each recipient's copy: (recipient, envelope recipients, the message as it goes on the wire).

    A plain message (no attachment, no PGP, no Cc, Bcc or Reply-To) is built here: multipart/alternative, its
    text part the text the template wrote, both parts quoted-printable (binascii), headers as they are when short
    ASCII and folded by the standard library's SMTP policy otherwise (the subject and sender once per batch,
    cached). Building it with `EmailMessage` cost about 1 ms a message, Apprise's builder 2; anything else is
    built by Apprise.
    """
    if not recipients:
        raise ValueError(f"no valid recipient in {plugin.url(privacy=True)}")
    if item.attachments or plugin.pgp_mode != PGP_MODE_DEFAULT or plugin.cc or plugin.bcc or plugin.reply_to:
        return [(m.recipient, list(m.to_addrs), m.body) for m in _prepared(plugin, item, recipients)]
    sender = formataddr(plugin.from_addr, charset="utf-8")
    now = format_datetime(datetime.now(tz=plugin.tzinfo or UTC))
    common = "".join(_header(name, value) for name, value in
                     {"X-Application": plugin.app_id, **plugin.headers, "Subject": item.message.subject,
                      "From": sender}.items())
    parts = b"".join(_part(content, subtype) for content, subtype in
                     ((item.message.text, "plain"), (item.message.html, "html")))
    domain = plugin.smtp_host or plugin.from_addr[1].split("@")[-1]
    built: list[tuple[str, list[str], bytes | str]] = []
    for name, address in recipients:
        boundary = f"=={secrets.token_hex(16)}=="  # quoted-printable never writes "==": it cannot occur in a part
        head = (f"{common}{_header('To', formataddr((str(name) if name else None, address), charset='utf-8'))}"
                f"{_header('Message-ID', make_msgid(domain=domain))}{_header('Date', now)}MIME-Version: 1.0\r\n"
                f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
        separator = f"--{boundary}\r\n".encode()
        body = parts.replace(b"\0", separator) + f"--{boundary}--\r\n".encode()
        built.append((address, [address], head.encode("ascii") + body))
    return built


def _header(name: str, value: str) -> str:
    """One header line: as it is when it is short plain ASCII, else encoded and folded by the SMTP policy."""
    line = f"{name}: {value}\r\n"
    if len(line) <= 80 and line.isascii() and "\n" not in value and "\r" not in value:
        return line
    return _folded(name, value)


@functools.lru_cache(maxsize=256)
def _folded(name: str, value: str) -> str:
    folded = str(SMTP.header_factory(name, value).fold(policy=SMTP))
    # The policy may break right after the colon; readers then see the value with a leading space. Joined, the
    # first line is longer than 78 characters but far within SMTP's 998.
    lead = f"{name}:\r\n "
    return f"{name}: {folded[len(lead):]}" if folded.startswith(lead) else folded


def _part(content: str, subtype: str) -> bytes:
    """One MIME part in quoted-printable, preceded by a NUL where its boundary goes (NUL never occurs in QP)."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(lines.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
    return (b"\0Content-Type: text/%s; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            % subtype.encode() + encoded + b"\r\n")  # the line break before a boundary is the boundary's


def _prepared(plugin: NotifyEmail, item: Outgoing, recipients: list[tuple[str | bool, str]]) -> list[Any]:
    attach = _attachments(item.attachments) if item.attachments else None
    images = any((mimetypes.guess_type(path.name)[0] or "").startswith("image/") for path in item.attachments)
    headers = {"X-Application": plugin.app_id, **plugin.headers, **plugin._protocol_headers(item.message.html)}
    return list(NotifyEmail.prepare_emails(
        subject=item.message.subject, body=item.message.html, notify_format=apprise.NotifyFormat.HTML,
        from_addr=plugin.from_addr, to=recipients, cc=plugin.cc, bcc=plugin.bcc, reply_to=plugin.reply_to,
        smtp_host=plugin.smtp_host, attach=attach, headers=headers, names=plugin.names, pgp=plugin.pgp,
        pgp_mode=plugin.pgp_mode, inline=plugin.inline or images, tzinfo=plugin.tzinfo,
    ))


class _Uncertain(Exception):
    """The data reached the server but its reply did not: the message may have been stored."""


class _Server:
    """One mail server's SMTP session, kept open across the batch and reopened when the server drops it.

    A message whose reply was lost is not sent again here (the caller retries it later, keeping its links):
    re-sending it on the new session would put a second copy in an inbox that most likely has one. A session
    that delivered something before it dropped is reopened for the rest; one that delivered nothing, once; after
    that the server counts as down for the rest of the batch.
    """

    def __init__(self, plugin: NotifyEmail) -> None:
        self.plugin = plugin
        self.name = f"mail server {plugin.smtp_host}:{plugin.port}"
        self.smtp: AppriseSMTPController | None = None
        self.delivered = False
        self.fruitless = 0
        self.down: str | None = None
        self.announced: _Ready | None = None  # the message whose envelope was sent ahead, its replies not yet read

    def announce(self, ready: _Ready) -> None:
        """Send the envelope of `ready`'s first copy (MAIL, RCPT, DATA) in one write, its replies read by `send`;
        only to a server that says it takes commands ahead of their replies (PIPELINING, RFC 2920)."""
        if self.smtp is None or self.smtp._socket is None or not isinstance(ready.built, list) or not ready.built:
            return
        conn = self.smtp._socket
        if not conn.has_extn("pipelining"):
            return
        _, envelope, data = ready.built[0]
        try:
            commands = _envelope(conn, self.plugin.from_addr[1], envelope, data)
        except (ValueError, UnicodeError):
            return  # an unusable address: its own send says why
        try:
            conn.send(commands)
        except _SMTP_ERRORS:
            self._discard()  # part of an envelope may have gone: a fresh session for the send
            return
        self.announced = ready

    def send(self, ready: _Ready, while_waiting: Callable[[], None]) -> Outcome:
        announced, stale, self.announced = self.announced is ready, self.announced, None
        if stale is not None and not announced:  # replies this exchange would misread: start a fresh session
            self._discard()
        if isinstance(ready.built, Exception):
            return _failed(f"could not prepare the e-mail to {self.plugin.url(privacy=True)}: {ready.built}")
        while self.down is None:
            try:
                if self.smtp is None:
                    self.smtp, announced = _open(self.plugin), False
                    self.delivered = False
                outcome = _send_one(self.smtp, self.plugin, ready, while_waiting, announced)
                self.delivered = self.delivered or outcome.sent
                return outcome
            except _Uncertain as lost:
                self._drop(smtplib.SMTPServerDisconnected(str(lost)))
                return _failed(f"{self.name}: no reply after the message was sent ({lost}); it may have been "
                               "delivered", may_have_left=True)
            except _SMTP_ERRORS as error:
                self._drop(error)
        return _failed(self.down)

    def _drop(self, error: BaseException) -> None:
        self.close()
        self.fruitless = 0 if self.delivered else self.fruitless + 1
        if self.fruitless >= 2:
            self.down = f"{self.name}: {error}"

    def close(self) -> None:
        if self.announced is not None:  # the server may be reading a message's data: a QUIT would be part of it
            self._discard()
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            with contextlib.suppress(*_SMTP_ERRORS):
                smtp.__exit__(None, None, None)

    def _discard(self) -> None:
        """Drop the connection without a word: whatever the server was reading ends unfinished, so unstored."""
        smtp, self.smtp, self.announced = self.smtp, None, None
        if smtp is not None and smtp._socket is not None:
            with contextlib.suppress(*_SMTP_ERRORS):
                smtp._socket.close()


def _open(plugin: NotifyEmail) -> AppriseSMTPController:
    """Apprise's SMTP controller: the connection, STARTTLS or SSL, and login, as Apprise does them.

    Without TLS, the connection and login as its `__enter__` makes them, but for the TLS context it builds first
    whatever the mode (20-50 ms of CPU a session, each batch a drill hands over opening one).
    """
    smtp = AppriseSMTPController(
        host=plugin.smtp_host, port=plugin.port, secure_mode=plugin.secure_mode, user=plugin.user,
        password=plugin.password, verify_certificate=plugin.verify_certificate,
        socket_connect_timeout=plugin.socket_connect_timeout,
    )
    if plugin.secure_mode != SMTPSecureMode.INSECURE:
        return smtp.__enter__()
    conn = smtplib.SMTP(plugin.smtp_host, plugin.port, None, timeout=plugin.socket_connect_timeout)
    if plugin.user and plugin.password:
        try:
            conn.login(plugin.user, plugin.password)
        except _SMTP_ERRORS:
            with contextlib.suppress(*_SMTP_ERRORS):
                conn.quit()
            raise
    smtp._socket = conn  # type: ignore[assignment]  # Apprise types it as its initial None
    return smtp


def _send_one(smtp: AppriseSMTPController, plugin: NotifyEmail, ready: _Ready,
              while_waiting: Callable[[], None], announced: bool = False) -> Outcome:
    assert smtp._socket is not None and isinstance(ready.built, list)
    refused: list[str] = []
    left = False
    for number, (recipient, envelope, data) in enumerate(ready.built):
        refusal = _transmit(smtp._socket, plugin.from_addr[1], envelope, data, while_waiting,
                            announced=announced and number == 0)
        if refusal is None:
            left = True
        else:
            refused.append(f"{recipient}: {refusal}")
    if not refused:
        return Outcome()
    return _failed(f"the mail server refused {'; '.join(refused)}", may_have_left=left)


_CRLF_ENDINGS = re.compile(r"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


def _mail_options(conn: smtplib.SMTP, body: bytes | str) -> list[str]:
    return ["SMTPUTF8", "BODY=8BITMIME"] if not body.isascii() and conn.has_extn("smtputf8") else []


def _envelope(conn: smtplib.SMTP, sender: str, recipients: Sequence[str], body: bytes | str) -> bytes:
    """MAIL, each RCPT and DATA as one write, as smtplib's `mail`, `rcpt` and `data` would send them one by one
    (the same quoting, the same refusal of a line break in an address, UTF-8 only with SMTPUTF8)."""
    options = _mail_options(conn, body)
    conn.command_encoding = "utf-8" if options else "ascii"
    lines = [f"mail FROM:{smtplib.quoteaddr(sender)}{''.join(' ' + o for o in options)}",
             *(f"rcpt TO:{smtplib.quoteaddr(r)}" for r in recipients), "data"]
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("an address contains a line break")
    return "".join(f"{line}\r\n" for line in lines).encode(conn.command_encoding)


def _refusal(mail: tuple[int, bytes], accepted: list[str], data: tuple[int, bytes]) -> str | None:
    """Why the server refused the envelope (its MAIL, every RCPT, or its DATA), or None: it waits for the data."""
    if mail[0] != 250:
        return f"{mail[0]} {mail[1].decode(errors='replace')}"
    if not accepted:
        return "every recipient refused"
    if data[0] != 354:
        return f"{data[0]} {data[1].decode(errors='replace')}"
    return None


def _transmit(conn: smtplib.SMTP, sender: str, recipients: Sequence[str], body: bytes | str,
              while_waiting: Callable[[], None] = lambda: None, *, announced: bool = False) -> str | None:
    """smtplib's sendmail, telling a refusal (the reason, returned) from a reply lost after the data went.

    Any error before the final dot was sent means the server cannot have stored the message: it is raised as
    the SMTP error it is. After it, a lost connection raises _Uncertain. `while_waiting` runs while the server
    stores the message (the longest wait of the exchange). To a server that takes PIPELINING the envelope goes
    as one write (`announced`: it went already, its replies unread), else one command at a time as smtplib does.
    """
    conn.ehlo_or_helo_if_needed()
    if announced or conn.has_extn("pipelining"):
        if not announced:
            conn.send(_envelope(conn, sender, recipients, body))
        mail = conn.getreply()
        accepted = [r for r in recipients if conn.getreply()[0] in (250, 251)]
        data_reply = conn.getreply()
    else:  # one command at a time: a refusal ends the exchange before the next is sent
        mail = conn.mail(sender, _mail_options(conn, body))
        accepted = [r for r in recipients if conn.rcpt(r)[0] in (250, 251)] if mail[0] == 250 else []
        data_reply = conn.docmd("data") if accepted else (0, b"")
    if (refusal := _refusal(mail, accepted, data_reply)) is not None:
        if data_reply[0] == 354:  # pipelined, and DATA taken all the same: an empty message it refuses, ended
            conn.send(b".\r\n")
            conn.getreply()
        conn.rset()
        return refusal
    # Bytes come from the SMTP policy, already in CRLF lines; Apprise's strings are normalised here.
    encoded = body if isinstance(body, bytes) else _CRLF_ENDINGS.sub("\r\n", body).encode("utf-8")
    data = _LEADING_DOT.sub(b"..", encoded)
    conn.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")
    while_waiting()
    try:
        code, reply = conn.getreply()
    except (OSError, smtplib.SMTPServerDisconnected) as lost:
        raise _Uncertain(str(lost) or type(lost).__name__) from lost
    if code != 250:
        return f"{code} {reply.decode(errors='replace')}"
    if len(accepted) < len(recipients):
        return f"refused {', '.join(r for r in recipients if r not in accepted)}"
    return None
