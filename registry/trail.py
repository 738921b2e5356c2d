"""The append-only audit trail: an HMAC chain keyed outside the registry, its head sealed in checkpoints outside it.

Each row carries the keyed hash of the one before it, so without the trail key nobody can edit, insert or
re-chain rows and still verify. Deleting rows from the end leaves a valid chain, so the head is also sealed now
and then (at each report, at each successful `ops verify-trail`) in an append-only checkpoint file, each line
signed with the same key: a sealed event that is gone or changed is reported. README "The trail" says what this
cannot detect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Column, func, insert, text, type_coerce
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import utcnow

GENESIS = "0" * 64
_BATCH = 2000


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str
    action: str = Field(index=True)
    entity_type: str
    entity_id: int
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str = Field(unique=True, description="Unique, so two writers can never fork the chain.")
    hash: str = Field(unique=True)


TrailSettings = Callable[[], tuple[bytes | None, Path, Path]]
"""() → (the key or None for the development key file, the key file, the checkpoint file)."""


def _from_environment() -> tuple[bytes | None, Path, Path]:
    # Used only until the engine hands over its settings (configure): a registry used alone (a migration).
    data_dir = Path(os.environ.get("OPS_DATA_DIR", ".ops-data"))
    key = os.environ.get("OPS_TRAIL_KEY")
    checkpoints = os.environ.get("OPS_TRAIL_CHECKPOINT_PATH")
    return (key.encode() if key else None, data_dir / "trail.key",
            Path(checkpoints) if checkpoints else data_dir / "trail-checkpoints.jsonl")


_source: TrailSettings = _from_environment


def configure(source: TrailSettings) -> None:
    """Where the trail's key and checkpoints come from: engine.settings hands over the one place settings are
    read (env, .env, the production refusal), so the registry imports nothing of ours."""
    global _source
    _source = source


def _trail_settings() -> tuple[bytes | None, Path, Path]:
    return _source()


def _development_key(path: Path) -> bytes:
    """The key file beside the registry, created once with a random key readable by its owner only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        try:
            os.link(draft, path)  # atomic and refuses to overwrite: two first users end with the same key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path} is empty: restore the trail key or set OPS_TRAIL_KEY")
    return key


def trail_key() -> bytes:
    key, key_file, _ = _trail_settings()
    return key if key is not None else _development_key(key_file)


def _encode(data: Any) -> str:
    """The canonical JSON of an event's data: what its hash covers and, for new events, what is stored."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _signed(prev_hash: str, at: datetime, actor: str, action: str, entity_type: str, entity_id: int,
            encoded: str) -> bytes:
    """The bytes hashed: the canonical JSON array of the event's fields, its data already encoded by `_encode`.

    The same bytes as encoding the whole array at once (nested values encode as they do alone), so events
    hashed before the data was encoded separately verify unchanged.
    """
    head = _encode([prev_hash, at.isoformat(timespec="microseconds"), actor, action, entity_type, entity_id])
    return f"{head[:-1]},{encoded}]".encode()


def _payload(prev_hash: str, at: datetime, actor: str, action: str, entity_type: str, entity_id: int,
             data: dict[str, Any]) -> bytes:
    return _signed(prev_hash, at, actor, action, entity_type, entity_id, _encode(data))


def _digest(key: bytes, prev_hash: str, at: datetime, actor: str, action: str, entity_type: str, entity_id: int,
            data: dict[str, Any]) -> str:
    return _digest_encoded(key, prev_hash, at, actor, action, entity_type, entity_id, _encode(data))


def _digest_encoded(key: bytes, prev_hash: str, at: datetime, actor: str, action: str, entity_type: str,
                    entity_id: int, encoded: str) -> str:
    return hmac.new(key, _signed(prev_hash, at, actor, action, entity_type, entity_id, encoded),
                    hashlib.sha256).hexdigest()


_SCALARS = frozenset({str, int, float, bool, type(None)})
_JSON = _SCALARS | {list, dict}


def _plain(values: Any) -> bool:
    """Whether these values are JSON as they stand (strings, numbers, booleans, None, lists, dicts with string
    keys), so that reading back their encoding gives them again; a tuple, datetime, enum or int key does not.

    Checked a level at a time by type (`map` runs in C): ten thousand control refs cost a set of their types.
    """
    kinds = set(map(type, values))
    if kinds <= _SCALARS:
        return True
    if not kinds <= _JSON:
        return False
    for value in values:
        if type(value) is dict:
            if not (set(map(type, value)) <= {str} and _plain(value.values())):
                return False
        elif type(value) is list and not _plain(value):
            return False
    return True


def _canonical(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The data as stored (plain JSON: what reading the event back gives) and its canonical encoding, computed
    once for the hash and the row. Data that is not plain JSON yet goes through JSON once, as it always did
    (datetimes and other values by `str`, keys to strings); plain data, the usual case, is encoded only once."""
    if not _plain((data,)):
        data = json.loads(json.dumps(data, default=str))
    return data, _encode(data)


class _Encoded(TypeDecorator[Any]):
    """JSON text encoded already (by `_canonical`), bound to the JSON column as it is rather than encoded again."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> None:
        return None


def _unkeyed(event: AuditEvent) -> str:
    """The plain SHA-256 this trail used before it was keyed: what a forger without the key computes."""
    return hashlib.sha256(_payload(event.prev_hash, event.at, event.actor, event.action, event.entity_type,
                                   event.entity_id, event.data)).hexdigest()


_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]
_HEAD = select(_EVENTS.c.hash).order_by(_EVENTS.c.id.desc()).limit(1)  # Core: no ORM row for one hash


def _head(session: Session) -> str:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(714230)"))
    session.flush()  # what the caller changed is written before the event that records it
    head = session.connection().execute(_HEAD).scalar()
    return head or GENESIS


def record(session: Session, *, actor: str, action: str, entity_type: str, entity_id: int,
           data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event in the caller's transaction, chained to the current head.

    Its data is encoded once: the canonical JSON the hash covers is the text stored, so `verify` reads back
    exactly what was hashed (a big payload, an audit's ten thousand control refs, is not encoded three times).
    The event returned is not held by the session.
    """
    prev = _head(session)
    at = utcnow()
    payload, encoded = _canonical(data or {})
    digest = _digest_encoded(trail_key(), prev, at, actor, action, entity_type, entity_id, encoded)
    event_id = session.execute(
        insert(_EVENTS).values(at=at, actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                               data=type_coerce(encoded, _Encoded()), prev_hash=prev, hash=digest)
        .returning(_EVENTS.c.id)).scalar_one()
    return AuditEvent(id=event_id, at=at, actor=actor, action=action, entity_type=entity_type, entity_id=entity_id,
                      data=payload, prev_hash=prev, hash=digest)


@dataclass(frozen=True)
class Entry:
    """One event for `record_many`."""

    actor: str
    action: str
    entity_type: str
    entity_id: int
    data: dict[str, Any] = field(default_factory=dict)


def record_many(session: Session, entries: Sequence[Entry]) -> int:
    """Append many events in the caller's transaction, chained in order: one head query, bulk inserts.

    What an import uses, so 100,000 changed rows are 100,000 events without 100,000 round trips.
    """
    if not entries:
        return 0
    key, prev = trail_key(), _head(session)
    rows = []
    for entry in entries:
        at = utcnow()
        payload, encoded = _canonical(entry.data)
        digest = _digest_encoded(key, prev, at, entry.actor, entry.action, entry.entity_type, entry.entity_id,
                                 encoded)
        rows.append({"at": at, "actor": entry.actor, "action": entry.action, "entity_type": entry.entity_type,
                     "entity_id": entry.entity_id, "data": payload, "prev_hash": prev, "hash": digest})
        prev = digest
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(_EVENTS), rows[start:start + _BATCH])
    return len(rows)


@dataclass(frozen=True)
class Checkpoint:
    """The head of the trail at one moment, as a line of the checkpoint file."""

    event_id: int
    hash: str
    events: int
    at: str

    def _body(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    def signed(self, key: bytes) -> str:
        return json.dumps({**asdict(self), "mac": hmac.new(key, self._body(), hashlib.sha256).hexdigest()},
                          sort_keys=True)

    def signed_by(self, key: bytes, mac: str) -> bool:
        return hmac.compare_digest(hmac.new(key, self._body(), hashlib.sha256).hexdigest(), mac)


def _read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], list[str]]:
    if not path.exists():
        return [], []
    sealed: list[Checkpoint] = []
    problems: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            mac = fields.pop("mac")
            point = Checkpoint(event_id=int(fields["event_id"]), hash=str(fields["hash"]),
                               events=int(fields["events"]), at=str(fields["at"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            problems.append(f"checkpoint {path.name} line {number}: unreadable (edited)")
            continue
        if not point.signed_by(key, str(mac)):
            problems.append(f"checkpoint {path.name} line {number}: its signature does not match (edited or forged)")
            continue
        sealed.append(point)
    return sealed, problems


def checkpoint(session: Session) -> Checkpoint | None:
    """Seal the current head in the checkpoint file (once per head); None while the trail is empty."""
    head = session.exec(select(AuditEvent.id, AuditEvent.hash).order_by(col(AuditEvent.id).desc()).limit(1)).first()
    if head is None:
        return None
    key, path = trail_key(), _trail_settings()[2]
    sealed, _ = _read_checkpoints(path, key)
    event_id, digest = head
    assert event_id is not None
    if sealed and (sealed[-1].event_id, sealed[-1].hash) == (event_id, digest):
        return sealed[-1]
    count = session.exec(select(func.count()).select_from(AuditEvent).where(col(AuditEvent.id) <= event_id)).one()
    point = Checkpoint(event_id=event_id, hash=digest, events=count, at=utcnow().isoformat(timespec="seconds"))
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write of one short line with O_APPEND: concurrent writers never interleave within a line.
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(handle, (point.signed(key) + "\n").encode())
    finally:
        os.close(handle)
    return point


@dataclass(frozen=True)
class TrailReport:
    events: int
    head: str
    problems: list[str]
    checkpoints: int = 0
    latest: Checkpoint | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> TrailReport:
    """Recompute every keyed hash and compare the sealed heads: edits, deletions, forged or re-chained rows and
    truncation before the latest checkpoint are each reported by id."""
    key = trail_key()
    sealed, problems = _read_checkpoints(_trail_settings()[2], key)
    by_id: dict[int, list[Checkpoint]] = {}
    for point in sealed:
        by_id.setdefault(point.event_id, []).append(point)
    prev = GENESIS
    prev_id = 0
    count = 0
    for event in session.exec(select(AuditEvent).order_by(col(AuditEvent.id))):
        count += 1
        assert event.id is not None
        if event.prev_hash != prev:
            if event.id != prev_id + 1:
                problems.append(f"events {prev_id + 1}..{event.id - 1} are missing (deleted)")
            problems.append(f"event {event.id}: does not follow event {prev_id} (chain broken)")
        # An id gap on a chain that holds is a PostgreSQL sequence value a rolled-back transaction used.
        expected = _digest(key, event.prev_hash, event.at, event.actor, event.action, event.entity_type,
                           event.entity_id, event.data)
        if not hmac.compare_digest(expected, event.hash):
            why = ("hashed without the trail key (forged, or written before the trail was keyed)"
                   if event.hash == _unkeyed(event) else "content does not match its hash (edited)")
            problems.append(f"event {event.id} ({event.action}): {why}")
        for point in by_id.pop(event.id, []):
            if point.hash != event.hash:
                problems.append(f"event {event.id}: not the event sealed by the checkpoint of {point.at} "
                                "(rewritten and re-hashed)")
            elif point.events != count:
                problems.append(f"event {event.id}: {count} events up to it, the checkpoint of {point.at} "
                                f"counted {point.events} (rows deleted or inserted before it)")
        prev, prev_id = event.hash, event.id
    for event_id, points in sorted(by_id.items()):
        point = max(points, key=lambda p: p.events)
        problems.append(f"event {event_id}, sealed by the checkpoint of {point.at}, is gone: the trail was "
                        f"truncated ({point.events} events then, {count} now)")
    latest = max(sealed, key=lambda p: p.event_id) if sealed else None
    return TrailReport(events=count, head=prev, problems=problems, checkpoints=len(sealed), latest=latest)
