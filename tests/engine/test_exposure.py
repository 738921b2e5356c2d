"""What the gateway and the exports let out: no inbox in production, no body read before its token is checked,
security headers on every answer, no exception text on a page, no file of a losing answer, no formula cell."""

from __future__ import annotations

import csv
import hashlib
import re
import secrets
import select as select_io
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import func, select

from engine import links
from engine.gateway import MAX_BODY_BYTES
from engine.settings import Settings, get_settings
from flows.reporting.operations_report.flow import operations_report
from registry import AuditEvent, Direction, HumanStep, KpiDefinition, KpiMeasurement, StepStatus, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.links import answer_link

SECURITY_HEADERS = ("Cache-Control", "Referrer-Policy", "X-Frame-Options", "X-Content-Type-Options",
                    "Content-Security-Policy")
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
BOUNDARY = "ops-test-boundary"
MB = 1024 * 1024


@dataclass
class Asked:
    step_id: int
    token: str
    url: str
    path: str


def _ask(gateway: Gateway, kind: str = "form", **step_args: object) -> Asked:
    with session() as db:
        person = factories.person(db)
        step = factories.step(db, person, kind=kind, **step_args)  # type: ignore[arg-type]
        token = factories.link(db, step)
        assert step.id is not None
        return Asked(step.id, token, f"{gateway.url}/s/{token}", f"/s/{token}")


def _hidden(page: httpx.Response) -> dict[str, str]:
    return dict(HIDDEN.findall(page.text))


def _step(step_id: int) -> HumanStep:
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        return step


def _evidence_files() -> list[Path]:
    root = get_settings().evidence_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- a request sent byte by byte over a socket, to see how much of it the server read before answering ---

@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client had written when the answer came
    seconds: float


def _multipart_head(fields: dict[str, str], filename: str = "evidence.pdf") -> bytes:
    parts = "".join(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    for k, v in fields.items())
    return (parts + f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="evidence_file"; '
            f'filename="{filename}"\r\nContent-Type: application/pdf\r\n\r\n').encode()


def _raw_post(gateway: Gateway, path: str, body: Iterator[bytes], *, content_length: int | None,
              wait: float = 5.0) -> RawAnswer:
    """POST `body` as it is pulled; stop sending as soon as the server answers (or stops reading)."""
    where = urlsplit(gateway.url)
    started = time.monotonic()
    with socket.create_connection((where.hostname or "", where.port or 80), timeout=wait) as sock:
        framing = f"Content-Length: {content_length}" if content_length is not None else \
            "Transfer-Encoding: chunked"
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\n"
                      f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n").encode())
        sent = 0
        for chunk in body:
            if select_io.select([sock], [], [], 0)[0]:
                break  # the server has answered: a browser would stop sending here too
            data = chunk if content_length is not None else f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            try:
                sock.sendall(data)
            except OSError:
                break  # the server closed the connection: it will not read the rest
            sent += len(chunk)
        received = b""
        while not _complete(received):
            try:
                more = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer within {wait} s after sending {sent} body bytes") from None
            if not more:
                break
            received += more
        answered = time.monotonic() - started
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return RawAnswer(int(lines[0].split()[1]), headers, rest, sent, answered)


def _complete(received: bytes) -> bool:
    head, found, rest = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return bool(found) and (length is None or len(rest) >= int(length.group(1)))


def _trickle(first: bytes, total: int, chunk: int = 64 * 1024, pause_after: int | None = None) -> Iterator[bytes]:
    """`first`, then zero bytes up to `total`; after `pause_after` bytes it waits, as a slow upload would."""
    yield first
    sent = len(first)
    while sent < total:
        if pause_after is not None and sent >= pause_after:
            time.sleep(0.05)
        piece = min(chunk, total - sent)
        yield b"\0" * piece
        sent += piece


# --- production serves no inbox and starts no mail catcher ---

@pytest.fixture
def production(registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_MODE", "production")
    monkeypatch.setenv("OPS_SECRET_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("OPS_TRAIL_KEY", secrets.token_hex(32))
    get_settings.cache_clear()


def test_production_serves_no_inbox_and_catches_no_mail(production: None, smtp: Mailbox, gateway: Gateway) -> None:
    assert get_settings().mode == "production" and get_settings().mail_catcher, "the catcher is asked for"
    asked = _ask(gateway, kind="approval")
    from engine import channels
    from engine.templates import Message

    # Its attachment holds the live link too: production must not hand out the file either.
    request = get_settings().data_dir / "request.pdf"
    request.write_bytes(f"%PDF-1.4 Answer here: {asked.url}".encode())
    channels.send(f"{smtp.url}&to=someone@test.example",
                  Message(subject="Approve", text=f"Answer here: {asked.url}", html=""), [request])
    smtp.wait_for(1)
    assert [a.name for a in smtp.messages()[0].attachments] == ["request.pdf"]

    key = smtp.messages()[0].key
    for path in ("/inbox", "/inbox?to=someone", f"/inbox/{key}", f"/inbox/{key}/cid/chart.png",
                 f"/inbox/{key}/attachment/1", f"/inbox/{key}/attachment/1?download=1"):
        response = gateway.client.get(f"{gateway.url}{path}")
        assert response.status_code == 404, path
        assert asked.token not in response.text
    assert not get_settings().catches_mail
    assert Settings(mode="production", secret_key="x" * 40, trail_key="y" * 64).catches_mail is False  # type: ignore[arg-type]
    assert Settings(mode="development").catches_mail is True
    assert Settings(mode="development", mail_catcher=False).catches_mail is False


def test_development_still_serves_the_inbox(gateway: Gateway) -> None:
    assert get_settings().catches_mail
    assert gateway.client.get(f"{gateway.url}/inbox").status_code == 200


# --- a body is refused from its Content-Length, while it streams, and is read only behind a usable token ---

def test_a_forged_token_with_a_huge_body_is_refused_before_the_body_is_read(gateway: Gateway) -> None:
    forged = f"/s/{secrets.token_urlsafe(32)}"
    head = _multipart_head({"csrf": "x", "step_id": "1", "result": "pass"})

    claimed_huge = _raw_post(gateway, forged, _trickle(head, 400 * MB, pause_after=64 * 1024),
                             content_length=400 * MB)
    claimed_small = _raw_post(gateway, forged, _trickle(head, 10 * MB, pause_after=64 * 1024),
                              content_length=10 * MB)

    assert claimed_huge.status == 413 and claimed_small.status == 404
    for answer in (claimed_huge, claimed_small):
        # The client only trickled; answered at once, the server cannot have read (or spooled, past 1 MB) the body.
        assert answer.sent < 1 * MB, answer.sent
        assert answer.seconds < 3, answer.seconds
    assert b"This link is not valid" in claimed_small.body
    assert _evidence_files() == []


def test_an_unusable_token_reads_no_body(gateway: Gateway) -> None:
    now = utcnow()
    expired = _ask(gateway, due=now - timedelta(days=2), expires=now - timedelta(minutes=1))
    hidden = {"csrf": links.csrf_for(expired.token), "step_id": str(expired.step_id), "result": "pass"}

    answer = _raw_post(gateway, expired.path, _trickle(_multipart_head(hidden), 10 * MB, pause_after=64 * 1024),
                       content_length=10 * MB)

    assert answer.status == 410 and answer.sent < 1 * MB and answer.seconds < 3
    assert _step(expired.step_id).status is StepStatus.pending


def test_a_valid_token_with_a_body_over_the_cap_is_refused_from_its_length_and_while_streaming(
        gateway: Gateway) -> None:
    asked = _ask(gateway)
    hidden = _hidden(gateway.client.get(asked.url))
    head = _multipart_head({**hidden, "result": "pass", "note": "the whole backup"})

    by_length = _raw_post(gateway, asked.path, _trickle(head, MAX_BODY_BYTES + 1, pause_after=64 * 1024),
                          content_length=MAX_BODY_BYTES + 1)
    streamed = _raw_post(gateway, asked.path, _trickle(head, 200 * MB), content_length=None, wait=20)

    assert by_length.status == 413 and by_length.sent < 1 * MB and by_length.seconds < 3
    assert streamed.status == 413
    # Counted as it arrived: refused near the cap (socket buffers hold a few MB more), not after 200 MB.
    assert streamed.sent < MAX_BODY_BYTES + 16 * MB, streamed.sent
    for answer in (by_length, streamed):
        assert b"too large" in answer.body
    assert _step(asked.step_id).status is StepStatus.pending
    assert _evidence_files() == []

    within = answer_link(gateway.client, asked.url, {"result": "pass", "note": ""},
                         files={"evidence_file": ("log.pdf", b"%PDF-1.4 " + b"x" * (2 * MB))})
    assert within.status_code == 200 and _step(asked.step_id).status is StepStatus.answered


# --- every answer carries the security headers, and no page shows an exception ---

def _multipart(fields: dict[str, str], boundary: str = BOUNDARY) -> bytes:
    return "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in fields.items()).encode() + f"--{boundary}--\r\n".encode()


def test_every_response_carries_the_security_headers_and_no_exception_text(
        gateway: Gateway, smtp: Mailbox) -> None:
    client, base = gateway.client, gateway.url
    now = utcnow()
    fresh, used, invalid, unread = _ask(gateway), _ask(gateway), _ask(gateway), _ask(gateway)
    expired = _ask(gateway, due=now - timedelta(days=2), expires=now - timedelta(minutes=1))
    answer_link(client, used.url, {"result": "fail", "note": "Not done."})
    hidden = _hidden(client.get(unread.url))
    from engine import channels
    from engine.templates import Message

    attached = get_settings().data_dir / "notes.txt"
    attached.write_text("Notes.")
    channels.send(f"{smtp.url}&to=reader@test.example", Message(subject="Hello", text="Hi.", html="<p>Hi.</p>"),
                  [attached])
    [mail] = smtp.wait_for(1)

    many_fields = {**hidden, **{f"f{n}": "x" for n in range(60)}}
    responses: dict[str, tuple[int, httpx.Response]] = {
        "step page": (200, client.get(fresh.url)),
        "step page, HEAD": (200, client.head(fresh.url)),
        "health": (200, client.get(f"{base}/healthz")),
        "inbox": (200, client.get(f"{base}/inbox")),
        "inbox mail": (200, client.get(f"{base}/inbox/{mail.key}")),
        "inbox, no such mail": (404, client.get(f"{base}/inbox/nothing-here")),
        "inbox attachment": (200, client.get(f"{base}/inbox/{mail.key}/attachment/1")),
        "inbox, no such attachment": (404, client.get(f"{base}/inbox/{mail.key}/attachment/2")),
        "no boundary": (400, client.post(fresh.url, content=_multipart(hidden),
                                         headers={"Content-Type": "multipart/form-data"})),
        "no disposition": (400, client.post(fresh.url, content=f"--{BOUNDARY}\r\n\r\nx\r\n--{BOUNDARY}--\r\n",
                                            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})),
        "too many fields": (400, client.post(fresh.url, content=_multipart(many_fields),
                                             headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})),
        "no csrf": (403, client.post(fresh.url, data={"step_id": str(fresh.step_id), "result": "pass"})),
        "forged": (404, client.get(f"{base}/s/{secrets.token_urlsafe(32)}")),
        "no such page": (404, client.get(f"{base}/admin")),
        "wrong method": (405, client.put(fresh.url, content=b"")),
        "used": (409, client.get(used.url)),
        "expired": (410, client.get(expired.url)),
        "too large": (413, client.post(fresh.url, content=b"x" * (MAX_BODY_BYTES + 1),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})),
        "invalid answer": (422, answer_link(client, invalid.url, {"result": "maybe", "note": ""})),
    }
    # A registry that lost a table: the gateway fails, and must say so without showing why.
    with sqlite3.connect(get_settings().data_dir / "registry.db") as broken:
        broken.execute("DROP TABLE step_link")
    responses["registry broken"] = (500, client.get(fresh.url))

    problems = []
    for name, (status, response) in responses.items():
        missing = [h for h in SECURITY_HEADERS if h not in response.headers]
        if response.status_code != status or missing:
            problems.append(f"{name}: {response.status_code} (expected {status}), missing {missing}")
        for leaked in ("Traceback", "Error", "Exception", "boundary", "Content-Disposition", "Maximum number",
                       "step_link", "sqlite", "could not be read:"):
            if leaked in response.text:
                problems.append(f"{name}: the page shows {leaked!r}")
    assert problems == []
    assert "text/html" in responses["no boundary"][1].headers["content-type"]
    assert "<h1" in responses["registry broken"][1].text
    assert _step(fresh.step_id).status is StepStatus.pending


# --- the file of an answer is stored only if the answer is recorded ---

def _post_files_together(url: str, fields: dict[str, str], contents: list[bytes]) -> list[int]:
    """POST the form once per file, each from its own client and thread, released at the same instant."""
    barrier = threading.Barrier(len(contents))
    statuses: list[int] = []

    def _post(content: bytes) -> None:
        with httpx.Client(timeout=20) as client:
            barrier.wait(timeout=10)
            statuses.append(client.post(url, data=fields, files={"evidence_file": ("log.pdf", content)}).status_code)

    threads = [threading.Thread(target=_post, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


def test_two_simultaneous_answers_with_different_files_keep_one_answer_and_one_file(
        any_db: str, gateway: Gateway) -> None:
    for _round in range(3):
        asked = _ask(gateway)
        hidden = _hidden(gateway.client.get(asked.url))
        contents = [f"%PDF-1.4 restore log {n} ".encode() * 2000 for n in (_round * 2, _round * 2 + 1)]

        statuses = _post_files_together(asked.url, {**hidden, "result": "pass", "note": ""}, contents)

        assert sorted(statuses) == [200, 409]
        step = _step(asked.step_id)
        assert step.status is StepStatus.answered and step.answer is not None
        stored = Path(step.answer["evidence_file"]["stored_path"])
        assert stored.read_bytes() in contents
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == step.answer["evidence_file"]["sha256"]
    files = _evidence_files()
    assert len(files) == 3, [f.name for f in files]
    with session() as db:
        assert db.exec(select(func.count()).select_from(AuditEvent)
                       .where(AuditEvent.action == "step.answered")).one() == 3


def test_an_answer_whose_file_cannot_be_stored_is_not_recorded(gateway: Gateway) -> None:
    asked = _ask(gateway)
    evidence = get_settings().evidence_dir
    evidence.parent.mkdir(parents=True, exist_ok=True)
    evidence.write_text("a file where the evidence folder should be")

    refused = answer_link(gateway.client, asked.url, {"result": "pass", "note": ""},
                          files={"evidence_file": ("log.pdf", b"%PDF-1.4 the log")})

    assert refused.status_code == 500
    assert "Traceback" not in refused.text and "Errno" not in refused.text
    assert _step(asked.step_id).status is StepStatus.pending
    evidence.unlink()
    again = answer_link(gateway.client, asked.url, {"result": "pass", "note": ""},
                        files={"evidence_file": ("log.pdf", b"%PDF-1.4 the log")})
    assert again.status_code == 200 and len(_evidence_files()) == 1


# --- a CSV export never hands a spreadsheet a formula ---

def test_figures_csv_neutralises_formula_cells_and_keeps_negative_numbers(prefect_api: str, registry_db: str) -> None:
    hostile = {"=2+3": "=HYPERLINK(\"http://evil.example\")", "@SUM(A1)": "+cmd", "-1+1": "\tTab", "\rCR": "ok"}
    with session() as db:
        for code, name in hostile.items():
            kpi = KpiDefinition(code=code, name=name, unit="@unit", target=-2.5, direction=Direction.higher_is_better)
            db.add(kpi)
            db.flush()
            db.add_all([KpiMeasurement(kpi_id=kpi.id or 0, measured_on=date(2026, 10, 4), value=-3.5),
                        KpiMeasurement(kpi_id=kpi.id or 0, measured_on=date(2026, 9, 20), value=1.0)])

    outcome = operations_report(period="2026-10", send=False)

    with open(outcome.csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    kpi_rows = [r for r in rows if r["section"] == "kpis"]
    assert len(kpi_rows) == 4 * len(hostile)
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            if cell.startswith("-"):
                float(cell)  # only a number may start with a minus: written as data, read back as a number
    items = {r["item"] for r in kpi_rows}
    assert items == {f"'{code} {name}" for code, name in hostile.items()}
    means = [r for r in kpi_rows if r["measure"] == "period mean"]
    assert {(r["value"], r["target"], r["unit"]) for r in means} == {("-3.5", "-2.5", "'@unit")}
    changes = {r["value"] for r in kpi_rows if r["measure"] == "change"}
    assert changes == {"-4.5"}


def test_a_csv_cell_reads_back_as_written_text_or_number() -> None:
    from engine.exports import csv_bytes

    written = csv_bytes(["name", "value"], [["=1+1", -3.5], ["a\rb\nc", 0], ["-5", None], ["plain, with comma", 2]])

    rows = list(csv.reader(written.decode().splitlines(keepends=True)))
    assert rows == [["name", "value"], ["'=1+1", "-3.5"], ["a\rb\nc", "0"], ["'-5", ""], ["plain, with comma", "2"]]
