"""Link capabilities: a random token per (step, person); the registry keeps only its SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import Enum

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from engine.settings import get_settings
from registry import HumanStep, Person, StepLink, StepStatus
from registry.clock import utcnow


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint(*, step: HumanStep, person_id: int) -> tuple[str, StepLink]:
    """A new 256-bit token for `person_id` to answer `step`, valid until the step expires, and its row."""
    assert step.id is not None
    token = secrets.token_urlsafe(32)
    return token, StepLink(step_id=step.id, person_id=person_id, token_hash=hash_token(token),
                           expires_at=step.expires_at)


def issue(session: Session, *, step: HumanStep, person_id: int) -> str:
    """Mint a token and add its row to `session`."""
    token, link = mint(step=step, person_id=person_id)
    session.add(link)
    return token


def url_for(token: str) -> str:
    return f"{get_settings().gateway_url.rstrip('/')}/s/{token}"


def csrf_for(token: str) -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, b"csrf:" + hash_token(token).encode(), hashlib.sha256).hexdigest()


def csrf_ok(token: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_for(token), presented or "")


class Refusal(Enum):
    """Why a link cannot be used; `status` is the HTTP status the gateway answers.

    The values are (status, reason): with the status alone, the three 403 reasons would be one member.
    """

    unknown = (404, "unknown")
    not_yours = (403, "not_yours")
    own_request = (403, "own_request")
    inactive = (403, "inactive")
    decided = (409, "decided")
    expired = (410, "expired")
    withdrawn = (410, "withdrawn")

    @property
    def status(self) -> int:
        return int(self.value[0])


@dataclass
class LinkCheck:
    link: StepLink | None
    step: HumanStep | None
    person: Person | None
    refusal: Refusal | None

    @property
    def usable(self) -> bool:
        return self.refusal is None


def link_statement(token_hash: str) -> SelectOfScalar[StepLink]:
    """The link presented by its token's hash: run for every page and every POST, on the unique index."""
    return select(StepLink).where(col(StepLink.token_hash) == token_hash)


def check(session: Session, token: str, *, for_step_id: int | None = None) -> LinkCheck:
    """Resolve a presented token; `for_step_id` is the step the form claims to answer."""
    link = session.exec(link_statement(hash_token(token))).first()
    if link is None:
        return LinkCheck(None, None, None, Refusal.unknown)
    step = session.get(HumanStep, link.step_id)
    person = session.get(Person, link.person_id)
    assert step is not None and person is not None
    if for_step_id is not None and for_step_id != step.id:
        return LinkCheck(link, step, person, Refusal.not_yours)
    if step.status == StepStatus.expired:
        return LinkCheck(link, step, person, Refusal.expired)
    if step.status == StepStatus.cancelled:
        return LinkCheck(link, step, person, Refusal.withdrawn)
    if step.status != StepStatus.pending:
        return LinkCheck(link, step, person, Refusal.decided)
    if link.expires_at <= utcnow():
        return LinkCheck(link, step, person, Refusal.expired)
    if not person.active:
        return LinkCheck(link, step, person, Refusal.inactive)
    if step.kind == "approval" and step.requested_by_id == person.id:
        return LinkCheck(link, step, person, Refusal.own_request)
    return LinkCheck(link, step, person, None)
