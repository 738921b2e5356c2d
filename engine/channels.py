"""Where a person's messages go, and the one place that hands them to Apprise."""

from __future__ import annotations

from urllib.parse import quote

import apprise

from engine.settings import get_settings
from engine.templates import Message
from registry import Person

_EMAIL_SCHEMES = ("mailto", "mailtos")


def targets(person: Person) -> list[str]:
    """The person's Apprise URLs; with none, e-mail through the configured mail server."""
    if person.channels:
        return list(person.channels)
    base = get_settings().mail_url.get_secret_value()
    return [f"{base}{'&' if '?' in base else '?'}to={quote(person.email, safe='@')}"]


def redacted(url: str) -> str:
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    return plugin.url(privacy=True) if plugin is not None else url.split("://", 1)[0] + "://…"


def send(url: str, message: Message) -> str | None:
    """Deliver one message to one channel; the error text (secrets masked) or None on success."""
    plugin = apprise.Apprise()
    if not plugin.add(url):
        return f"unusable channel URL {redacted(url)}"
    is_email = url.split("://", 1)[0].lower() in _EMAIL_SCHEMES
    with apprise.LogCapture(level=apprise.logging.WARNING) as log:
        delivered = plugin.notify(
            title=message.subject,
            body=message.html if is_email else message.text,
            body_format=apprise.NotifyFormat.HTML if is_email else apprise.NotifyFormat.TEXT,
        )
        captured = log.getvalue() if hasattr(log, "getvalue") else ""
    if delivered:
        return None
    return (captured.strip() or f"delivery to {redacted(url)} failed")[-500:]
