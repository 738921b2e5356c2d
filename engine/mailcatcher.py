"""A local SMTP server that keeps every message in a Maildir, for the embedded stack and the tests."""

from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _MaildirHandler:
    def __init__(self, directory: Path) -> None:
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.box = mailbox.Maildir(directory, create=False)

    async def handle_EHLO(self, _server: Any, session: Any, _envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        # aiosmtpd reads each command off one buffered stream in order, so a client may send MAIL, RCPT and DATA
        # without waiting for each reply (RFC 2920). Said, as real mail servers say it: a client pipelines only
        # when told it may.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        del message["X-Envelope-To"]
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.box.add(message)
        return "250 Message accepted"


def start(directory: Path, host: str = "127.0.0.1", port: int = 1025) -> Controller:
    """Start catching mail on host:port into `directory`; call .stop() on the result to end it."""
    controller = Controller(_MaildirHandler(directory), hostname=host, port=port)
    controller.start()
    return controller
