"""The notification outbox: a message is a row before it is a delivery."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, text
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class DeliveryStatus(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    preview = "preview"


class Notification(SQLModel, table=True):
    # The messages that failed at least once and nobody has been told about: a handful among a year's outbox.
    # Every sweep looks for them (delivery's alert claim); both planners match the IS [NOT] NULL terms, which
    # carry no parameter, to this partial index instead of reading every row.
    __table_args__ = (
        Index("ix_notification_undelivered", "status", "created_at",
              sqlite_where=text("alerted_at IS NULL AND last_error IS NOT NULL"),
              postgresql_where=text("alerted_at IS NULL AND last_error IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True, index=True)
    message_key: str = Field(
        index=True, description="The key `enqueue` was given, shared by the message's rows on every channel: "
                                "its idempotency check is an equality lookup on this index, not a prefix match.",
    )
    recipient_id: int = Field(foreign_key="person.id", index=True)
    channel: int = Field(0, description="Index into the recipient's channels at the time it was queued.")
    template: str
    context: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    subject: str
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    body_html: str = Field(sa_column=Column(Text, nullable=False))
    attachments: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]"),
        description="Files under the data directory sent with the message; images are shown inline in e-mail.",
    )
    status: DeliveryStatus = Field(default=DeliveryStatus.pending, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    give_up_at: datetime | None = Field(
        default=None, description="Set at the first failed attempt: retries stop here (the linked steps' expiry, or a "
                          "long horizon); the message is then failed and a person has been told.",
    )
    alerted_at: datetime | None = Field(
        default=None, description="When a person was told this message is not getting through (once per episode).",
    )
