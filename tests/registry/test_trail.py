from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.cli import app
from engine.settings import get_settings
from registry import session, trail
from registry.clock import as_utc


def _write(count: int) -> None:
    with session() as db:
        for n in range(count):
            trail.record(db, actor="tester", action="thing.done", entity_type="thing", entity_id=n,
                         data={"n": n, "note": "ünïcode ok"})


def _sealed(count: int) -> None:
    _write(count)
    with session() as db:
        assert trail.checkpoint(db) is not None


def _problems() -> list[str]:
    with session() as db:
        return trail.verify(db).problems


def _rows() -> list[dict[str, object]]:
    with session() as db:
        return [dict(r) for r in db.execute(text("SELECT * FROM audit_event ORDER BY id")).mappings()]


def _payload(prev: str, row: dict[str, object]) -> bytes:
    at = as_utc(row["at"] if isinstance(row["at"], datetime) else datetime.fromisoformat(str(row["at"])))
    data = row["data"] if isinstance(row["data"], dict) else json.loads(str(row["data"]))
    return json.dumps([prev, at.isoformat(timespec="microseconds"), row["actor"], row["action"],
                       row["entity_type"], row["entity_id"], data],
                      sort_keys=True, separators=(",", ":"), default=str).encode()


def _plain_sha256(prev: str, row: dict[str, object]) -> str:
    """What anyone with write access to the registry could compute before the chain was keyed."""
    return hashlib.sha256(_payload(prev, row)).hexdigest()


def _rechain(rows: list[dict[str, object]], digest: Callable[[str, dict[str, object]], str], *, from_id: int) -> None:
    """Store `rows` (edited by the caller) with every hash from `from_id` on recomputed by `digest`."""
    prev = trail.GENESIS
    final = []
    for row in rows:
        new = digest(prev, row) if int(str(row["id"])) >= from_id else str(row["hash"])
        final.append((row, prev, new))
        prev = new
    with session() as db:
        # Two passes: prev_hash and hash are unique, so a chain rewritten in place would collide midway.
        for row, _, _ in final:
            db.execute(text("UPDATE audit_event SET actor = :actor, prev_hash = :p, hash = :h WHERE id = :id"),
                       {"actor": row["actor"], "p": f"p{row['id']}", "h": f"h{row['id']}", "id": row["id"]})
        for row, prev_hash, new in final:
            db.execute(text("UPDATE audit_event SET prev_hash = :p, hash = :h WHERE id = :id"),
                       {"p": prev_hash, "h": new, "id": row["id"]})


def test_an_untouched_trail_verifies(any_db: str) -> None:
    _sealed(5)
    _write(2)
    with session() as db:
        report = trail.verify(db)
    assert report.ok and report.events == 7 and report.head != trail.GENESIS
    assert report.latest is not None and report.latest.event_id == 5


def test_an_edited_row_is_detected(any_db: str) -> None:
    _write(5)
    with session() as db:
        db.execute(text("UPDATE audit_event SET data = :d WHERE id = 3"), {"d": json.dumps({"n": 99})})
    assert any("event 3" in p and "edited" in p for p in _problems())


def test_an_edited_actor_is_detected(any_db: str) -> None:
    _write(3)
    with session() as db:
        db.execute(text("UPDATE audit_event SET actor = 'someone else' WHERE id = 2"))
    assert any("event 2" in p for p in _problems())


def test_a_deleted_row_is_detected(any_db: str) -> None:
    _write(5)
    with session() as db:
        db.execute(text("DELETE FROM audit_event WHERE id = 2"))
    problems = _problems()
    assert any("missing" in p for p in problems)
    assert any("event 3" in p and "chain" in p for p in problems)


@pytest.mark.parametrize("deleted", [1, 3])
def test_deleting_the_last_rows_is_detected_against_the_checkpoint(any_db: str, deleted: int) -> None:
    _sealed(6)
    with session() as db:
        db.execute(text("DELETE FROM audit_event WHERE id > :keep"), {"keep": 6 - deleted})
    problems = _problems()
    assert any("event 6" in p and "truncated" in p and "6 events then" in p for p in problems), problems


def test_a_forged_append_without_the_key_is_detected(any_db: str) -> None:
    _sealed(3)
    head = _rows()[-1]
    forged: dict[str, object] = {"id": 4, "at": datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "actor": "director@x.org",
                                 "action": "audit.signed_off", "entity_type": "audit", "entity_id": 1,
                                 "data": {"note": "looks legitimate"}}
    with session() as db:
        db.execute(text("INSERT INTO audit_event (id, at, actor, action, entity_type, entity_id, data, prev_hash, "
                        "hash) VALUES (:id, :at, :actor, :action, :entity_type, :entity_id, :data, :prev, :hash)"),
                   {**forged, "data": json.dumps(forged["data"]), "prev": head["hash"],
                    "hash": _plain_sha256(str(head["hash"]), forged)})
    problems = _problems()
    assert any("event 4" in p and "without the trail key" in p for p in problems), problems


def test_a_rewritten_middle_row_with_every_later_hash_recomputed_is_detected(any_db: str) -> None:
    _sealed(6)
    rows = _rows()
    rows[2]["actor"] = "someone else"
    _rechain(rows, _plain_sha256, from_id=3)
    problems = _problems()
    assert any("event 3" in p and "without the trail key" in p for p in problems), problems
    assert any("event 6" in p and "checkpoint" in p for p in problems), problems


def test_a_chain_recomputed_with_the_key_is_still_caught_by_the_checkpoint(registry_db: str) -> None:
    """Someone holding the key, but not the checkpoint file, rewrites a sealed row and re-signs the rest."""
    _sealed(4)
    key = trail.trail_key()
    rows = _rows()
    rows[1]["actor"] = "someone else"
    _rechain(rows, lambda prev, row: hmac.new(key, _payload(prev, row), hashlib.sha256).hexdigest(), from_id=2)
    problems = _problems()
    assert len(problems) == 1 and "event 4" in problems[0] and "rewritten" in problems[0], problems


def test_an_edited_checkpoint_line_is_detected(registry_db: str) -> None:
    _sealed(3)
    path = get_settings().trail_checkpoints
    line = json.loads(path.read_text())
    line["events"] = 2
    path.write_text(json.dumps(line) + "\n")
    assert any("checkpoint" in p and "signature" in p for p in _problems())


def test_a_sequence_gap_on_an_intact_chain_is_not_tampering(any_db: str) -> None:
    """PostgreSQL spends a sequence value on a rolled-back insert; the chain, not the ids, is the evidence."""
    _write(2)
    with pytest.raises(RuntimeError), session() as db:
        trail.record(db, actor="tester", action="rolled.back", entity_type="thing", entity_id=0)
        raise RuntimeError("the caller's transaction fails after the event was flushed")
    with session() as db:
        db.execute(text("INSERT INTO audit_event (id, at, actor, action, entity_type, entity_id, data, prev_hash, "
                        "hash) VALUES (9, :at, 'x', 'y', 'z', 0, '{}', 'p', 'h')"), {"at": datetime(2026, 1, 1)})
    with session() as db:
        db.execute(text("DELETE FROM audit_event WHERE id = 9"))
    _write(1)
    with session() as db:
        ids = [row[0] for row in db.execute(text("SELECT id FROM audit_event ORDER BY id"))]
    if ids[-1] == 3:
        pytest.skip("this backend reuses freed ids; the gap never happens")
    assert _problems() == []


def test_events_recorded_in_bulk_chain_like_single_ones(any_db: str) -> None:
    _write(2)
    with session() as db:
        trail.record_many(db, [trail.Entry(actor="import", action="row.changed", entity_type="thing", entity_id=n,
                                           data={"n": n}) for n in range(5000)])
        trail.record(db, actor="tester", action="after", entity_type="thing", entity_id=0)
    with session() as db:
        report = trail.verify(db)
    assert report.ok, report.problems[:3]
    assert report.events == 5003


def test_the_development_key_is_created_once_readable_by_its_owner_only(registry_db: str) -> None:
    key = trail.trail_key()
    path = get_settings().trail_key_file
    assert path.stat().st_mode & 0o777 == 0o600
    assert trail.trail_key() == key and len(key) == 64


def test_a_trail_written_with_another_key_does_not_verify(registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(2)
    monkeypatch.setenv("OPS_TRAIL_KEY", "k" * 40)
    get_settings.cache_clear()
    assert any("event 1" in p and "edited" in p for p in _problems())


def test_the_checkpoint_file_can_live_elsewhere(registry_db: str, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: object) -> None:
    elsewhere = get_settings().data_dir.parent / "worm" / "heads.jsonl"
    monkeypatch.setenv("OPS_TRAIL_CHECKPOINT_PATH", str(elsewhere))
    get_settings.cache_clear()
    _sealed(2)
    assert elsewhere.exists() and not (get_settings().data_dir / "trail-checkpoints.jsonl").exists()


def test_verify_trail_command_exits_nonzero_on_tampering(registry_db: str) -> None:
    _write(3)
    runner = CliRunner()
    assert runner.invoke(app, ["verify-trail"]).exit_code == 0
    with session() as db:
        db.execute(text("UPDATE audit_event SET action = 'thing.undone' WHERE id = 1"))
    result = runner.invoke(app, ["verify-trail"])
    assert result.exit_code == 1
    assert "event 1" in result.output


@pytest.mark.parametrize("tamper", ["truncate-1", "truncate-3", "forge", "recompute"])
def test_verify_trail_seals_what_it_verified_and_exits_1_on_each_tampering(registry_db: str, tamper: str) -> None:
    _write(5)
    runner = CliRunner()
    first = runner.invoke(app, ["verify-trail"])
    assert first.exit_code == 0 and "no checkpoint before this one" in first.output, first.output
    again = runner.invoke(app, ["verify-trail"])
    assert again.exit_code == 0 and "latest at event 5" in again.output, again.output
    rows = _rows()
    if tamper.startswith("truncate"):
        with session() as db:
            db.execute(text("DELETE FROM audit_event WHERE id > :keep"), {"keep": 5 - int(tamper[-1])})
    elif tamper == "forge":
        forged = {**rows[-1], "id": 6, "actor": "someone else"}
        with session() as db:
            db.execute(text("INSERT INTO audit_event (id, at, actor, action, entity_type, entity_id, data, "
                            "prev_hash, hash) VALUES (:id, :at, :actor, :action, :entity_type, :entity_id, "
                            ":data, :prev, :hash)"),
                       {**forged, "prev": rows[-1]["hash"], "hash": _plain_sha256(str(rows[-1]["hash"]), forged)})
    else:
        rows[1]["actor"] = "someone else"
        _rechain(rows, _plain_sha256, from_id=2)
    result = runner.invoke(app, ["verify-trail"])
    expected = {"truncate-1": "event 5, sealed by the checkpoint", "truncate-3": "event 5, sealed by the checkpoint",
                "forge": "event 6 (thing.done): hashed without", "recompute": "event 2 (thing.done): hashed without"}
    assert result.exit_code == 1 and f"TAMPERED: {expected[tamper]}" in result.output, result.output


def test_every_saved_report_seals_the_trail(registry_db: str) -> None:
    from engine.reports import save_report

    _write(3)
    save_report("sealed.html", "pages/refused.html", {"title": "A report", "detail": "of three events"})
    with session() as db:
        db.execute(text("DELETE FROM audit_event WHERE id = 3"))
    assert any("event 3" in p and "truncated" in p for p in _problems())


def _stored_text(event_id: int) -> str:
    """The data column of an event as the database holds it (PostgreSQL's json keeps the text as given)."""
    with session() as db:
        return str(db.execute(text("SELECT CAST(data AS TEXT) FROM audit_event WHERE id = :id"),
                              {"id": event_id}).scalar_one())


def test_an_event_stores_the_canonical_json_its_hash_covers(any_db: str) -> None:
    data = {"period": "2026-Q3", "controls": [f"CTL-{n:05d}" for n in range(3000, 0, -1)], "count": 3000,
            "note": "ünïcode ok", "nested": [{"b": 1.5, "a": [True, None]}]}
    with session() as db:
        event = trail.record(db, actor="tester", action="audit.opened", entity_type="audit", entity_id=1, data=data)
    assert event.data == data and event.id is not None
    assert _stored_text(event.id) == json.dumps(data, sort_keys=True, separators=(",", ":"))
    rows = _rows()
    assert rows[0]["hash"] == hmac.new(trail.trail_key(), _payload(trail.GENESIS, rows[0]), hashlib.sha256).hexdigest()
    assert _problems() == []
    with session() as db:
        db.execute(text("UPDATE audit_event SET data = :d WHERE id = :id"),
                   {"d": json.dumps({**data, "controls": data["controls"][1:]}), "id": event.id})
    assert any(f"event {event.id}" in p and "edited" in p for p in _problems())


def test_data_that_is_not_plain_json_is_stored_as_json_reads_it_back(any_db: str) -> None:
    at = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    data: dict[str, object] = {"at": at, "refs": ("A", "B"), "by_id": {2: "two", 10: "ten"}, "flag": True}
    with session() as db:
        event = trail.record(db, actor="tester", action="thing.done", entity_type="thing", entity_id=1, data=data)
        trail.record_many(db, [trail.Entry(actor="import", action="row.changed", entity_type="thing", entity_id=2,
                                           data=data)])
    expected = json.loads(json.dumps(data, default=str))
    assert event.data == expected == {"at": str(at), "refs": ["A", "B"], "by_id": {"2": "two", "10": "ten"},
                                      "flag": True}
    assert [json.loads(_stored_text(n)) for n in (1, 2)] == [expected, expected]
    assert _problems() == []


def test_events_stored_before_the_data_was_encoded_once_verify_alike(any_db: str) -> None:
    """Rows written by the ORM (its own JSON, keys unsorted) hash the same canonical bytes: verify reads both."""
    from registry.clock import utcnow

    _write(1)
    key = trail.trail_key()
    with session() as db:
        prev = str(db.execute(text("SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1")).scalar_one())
        at, data = utcnow(), {"z": 1, "a": ["x", "y"], "m": {"k": "ü"}}
        digest = trail._digest(key, prev, at, "old", "thing.done", "thing", 7, data)
        db.add(trail.AuditEvent(at=at, actor="old", action="thing.done", entity_type="thing", entity_id=7, data=data,
                                prev_hash=prev, hash=digest))
    _write(1)
    assert _stored_text(2) != json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert _problems() == []
    with session() as db:
        db.execute(text("UPDATE audit_event SET data = :d WHERE id = 2"), {"d": json.dumps({**data, "z": 2})})
    assert [p for p in _problems() if "edited" in p] == ["event 2 (thing.done): content does not match its hash "
                                                          "(edited)"]
