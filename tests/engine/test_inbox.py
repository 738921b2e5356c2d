"""The development inbox: every caught message, its inline pictures and its attachments, to open or download."""

from __future__ import annotations

import re
import smtplib
import struct
import zlib
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from engine import channels
from engine.settings import get_settings
from engine.templates import Message
from flows.reporting.operations_report.flow import operations_report
from flows.reporting.operations_report.rules import DISTRIBUTION_ROLE
from registry import Direction, KpiDefinition, KpiMeasurement, session
from tests import browser, factories
from tests.conftest import Gateway, Mailbox

PDF = b"%PDF-1.4\n% the quarterly figures\n%%EOF\n"


def _png(width: int, height: int) -> bytes:
    """A solid blue PNG, written by hand so the test needs no imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x1d\x4e\x89" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.browser
def test_the_inbox_shows_a_mails_inline_chart_as_a_mail_client_would(
        smtp: Mailbox, gateway: Gateway, tmp_path: Path) -> None:
    chart = get_settings().data_dir.resolve() / "reports" / "chart.png"
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_bytes(_png(120, 40))
    message = Message(subject="Weekly figures", text="See the chart.",
                      html='<p>This week:</p><img src="cid:chart.png" alt="the chart">')
    assert channels.send(f"{smtp.url}&to=reader@demo.example", message, [chart]) is None
    [mail] = smtp.wait_for(1)
    assert mail.inline["chart.png"] == ("image/png", chart.read_bytes())

    page = gateway.client.get(f"{gateway.url}/inbox/{mail.key}")
    assert page.status_code == 200 and 'src="cid:' not in page.text
    image = gateway.client.get(f"{gateway.url}/inbox/{mail.key}/cid/chart.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == chart.read_bytes()
    assert gateway.client.get(f"{gateway.url}/inbox/{mail.key}/cid/nothing.png").status_code == 404

    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        shown = []
        for url in (f"{gateway.url}/inbox/{mail.key}", f"{gateway.url}/inbox"):
            view = chromium.new_page()
            view.goto(url)
            view.wait_for_load_state("load")
            shown.append(view.evaluate("() => Array.from(document.images).map(i => i.naturalWidth)"))
    assert shown == [[120], [120]], "the chart shows on the message page and in the inbox list"


# --- attachments: listed with name, type and size; each served as the mail carries it ---

def _send_raw(smtp: Mailbox, message: EmailMessage) -> None:
    """A message built here rather than by the engine, through the real catcher: names and types a sender chose."""
    message["From"], message["To"] = "someone@elsewhere.example", "reader@test.example"
    with smtplib.SMTP("127.0.0.1", smtp.port, timeout=10) as server:
        server.send_message(message)


# Sent as (sender's file name, type, content): what a reader gets, and what a browser must not run from the inbox.
FILES = [
    ("report.pdf", "application/pdf", PDF),
    ("Notizen — März.txt", "text/plain", "Zahlen für März\n".encode()),
    ("../../page.html", "text/html", b"<script>alert(document.cookie)</script>"),
    ("run.js", "application/javascript", b"fetch('/inbox')"),
    ("logo.svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>'),
    ("figures.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", b"PK\x03\x04 a sheet"),
]


def _mixed(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = subject
    message.set_content("See the attached.")
    message.add_alternative('<p>See the chart:</p><img src="cid:chart" alt="chart">', subtype="html")
    message.get_payload()[1].add_related(_png(8, 8), "image", "png", cid="<chart>", filename="chart.png")
    for name, content_type, content in FILES:
        maintype, subtype = content_type.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message


def _maildir_state() -> list[tuple[str, int, int]]:
    root = get_settings().mailbox_dir
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_the_inbox_lists_every_attachment_and_serves_each_with_its_type_and_name(
        smtp: Mailbox, gateway: Gateway) -> None:
    _send_raw(smtp, _mixed("Figures attached"))
    [mail] = smtp.wait_for(1)
    names = [(a.number, a.name, a.content_type, a.size, a.in_message) for a in mail.attachments]
    # No folder of the sender's reaches the reader: "../../page.html" is page.html.
    assert names == [(1, "chart.png", "image/png", len(_png(8, 8)), True)] + [
        (n, name.rsplit("/", 1)[-1], content_type, len(content), False)
        for n, (name, content_type, content) in enumerate(FILES, start=2)]
    before = _maildir_state()
    base = f"{gateway.url}/inbox/{mail.key}/attachment"

    for listing in (gateway.client.get(f"{gateway.url}/inbox"), gateway.client.get(f"{gateway.url}/inbox/{mail.key}")):
        assert listing.status_code == 200
        for attachment in mail.attachments:
            address = f"/inbox/{mail.key}/attachment/{attachment.number}"
            assert f'href="{address}"' in listing.text and f'href="{address}?download=1"' in listing.text
            assert attachment.content_type in listing.text
        assert "Notizen — März.txt" in listing.text
        assert "shown in the message" in listing.text and f"{len(PDF)} Bytes" in listing.text

    served = {n: gateway.client.get(f"{base}/{n}") for n in range(1, 8)}
    assert all(r.status_code == 200 for r in served.values())
    assert [r.content for r in served.values()] == [a.content for a in mail.attachments]
    types = {n: r.headers["content-type"] for n, r in served.items()}
    assert types == {1: "image/png", 2: "application/pdf", 3: "text/plain; charset=utf-8",
                     # what a browser would run, as script or as a page of this origin, is handed over as bytes
                     4: "application/octet-stream", 5: "application/octet-stream", 6: "application/octet-stream",
                     7: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    dispositions = {n: r.headers["content-disposition"] for n, r in served.items()}
    assert dispositions[2] == "inline; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    assert dispositions[3] == ("inline; filename=\"Notizen _ M_rz.txt\"; "
                               f"filename*=UTF-8''{quote('Notizen — März.txt', safe='')}")
    assert [d.split(";")[0] for d in dispositions.values()] == ["inline", "inline", "inline", "attachment",
                                                                  "attachment", "attachment", "attachment"]
    for n, response in served.items():
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        csp = response.headers["content-security-policy"]
        assert csp.startswith("sandbox") if n != 2 else "script-src" not in csp and "unsafe-eval" not in csp
    downloaded = gateway.client.get(f"{base}/2?download=1")
    assert downloaded.headers["content-disposition"].startswith("attachment; filename=\"report.pdf\"")
    assert downloaded.content == PDF
    assert gateway.client.head(f"{base}/2").status_code == 200
    assert gateway.client.post(f"{base}/2").status_code == 405
    assert _maildir_state() == before, "reading the inbox changes nothing in the maildir"


def test_a_message_key_or_attachment_that_does_not_exist_is_a_404_page(smtp: Mailbox, gateway: Gateway) -> None:
    _send_raw(smtp, _mixed("Figures attached"))
    [mail] = smtp.wait_for(1)
    stored = next(p for p in get_settings().mailbox_dir.rglob("*") if p.is_file())
    (get_settings().data_dir / "secret.txt").write_text("not mail")
    client = gateway.client

    def get(path: str) -> httpx.Response:
        # Sent as written: httpx would otherwise resolve the dots before the gateway saw them.
        return client.send(client.build_request("GET", f"{gateway.url}{path}"))

    for key, title in ((mail.key.upper(), "No such message"), (mail.key[:-1], "No such message"),
                       (f"{mail.key}:2,S", "No such message"), (stored.name + "x", "No such message"),
                       ("new", "No such message"), ("secret.txt", "No such message")):
        for path in (f"/inbox/{quote(key)}", f"/inbox/{quote(key)}/attachment/1"):
            response = get(path)
            assert response.status_code == 404 and title in response.text, path
    for number in (0, 8, 10**12):
        response = get(f"/inbox/{mail.key}/attachment/{number}")
        assert response.status_code == 404 and "No such attachment" in response.text
    for path in ("/inbox/..", "/inbox/../attachment/1", f"/inbox/{mail.key}/attachment/-1",
                 f"/inbox/{mail.key}/attachment/one",
                 f"/inbox/{mail.key}/attachment/1/../../../secret.txt", "/inbox/..%2F..%2Fsecret.txt/attachment/1",
                 f"/inbox/{mail.key}/attachment/%2e%2e%2f%2e%2e%2fsecret.txt"):
        response = get(path)
        assert response.status_code == 404 and "not mail" not in response.text, path
        assert "There is nothing at this address" in response.text or "No such" in response.text, path
    assert client.get(f"{gateway.url}/inbox/{mail.key}/cid/chart").status_code == 200


def test_a_message_without_a_readable_date_is_listed_last_and_takes_nothing_down(
        smtp: Mailbox, gateway: Gateway) -> None:
    undated, garbled, dated = (_mixed(subject) for subject in ("Undated", "Garbled date", "Dated"))
    garbled["Date"] = "the day after tomorrow"
    dated["Date"] = "Tue, 01 Dec 2026 09:00:00 -0000"  # no zone: read as UTC
    for message in (undated, garbled, dated):
        _send_raw(smtp, message)
    smtp.wait_for(3)

    page = gateway.client.get(f"{gateway.url}/inbox")

    assert page.status_code == 200
    assert page.text.index("Dated") < page.text.index("Garbled date")
    assert page.text.index("Dated") < page.text.index("Undated")


def test_the_mail_page_keeps_its_content_security_policy(smtp: Mailbox, gateway: Gateway) -> None:
    _send_raw(smtp, _mixed("Figures attached"))
    [mail] = smtp.wait_for(1)
    for path in ("/inbox", f"/inbox/{mail.key}"):
        csp = gateway.client.get(f"{gateway.url}{path}").headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in re.sub(r"style-src [^;]*", "", csp), "no inline script runs from a mail"


# --- the operations report's PDF, opened from the inbox in Chromium ---

@pytest.mark.browser
def test_the_report_mail_s_pdf_opens_from_the_inbox_in_chromium(
        prefect_api: str, smtp: Mailbox, gateway: Gateway, tmp_path: Path) -> None:
    with session() as db:
        reader = factories.person(db, "Rita Reader")
        reader.roles = [DISTRIBUTION_ROLE]
        db.add(reader)
        kpi = KpiDefinition(code="OTD", name="On-time delivery", unit="%", target=95,
                            direction=Direction.higher_is_better)
        db.add(kpi)
        db.flush()
        db.add_all(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=date(2026, 10, day), value=value)
                   for day, value in ((4, 93.0), (18, 96.0)))
    outcome = operations_report(period="2026-10")
    assert outcome.sent == 1
    [mail] = smtp.wait_for(1)
    report = Path(outcome.pdf).read_bytes()

    shots = Path("/tmp/inbox-attachments")
    shots.mkdir(exist_ok=True)
    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        view = chromium.new_page()
        view.set_default_timeout(10_000)
        view.goto(f"{gateway.url}/inbox")
        # What the reader sees: the report mail lists its PDF, with its type and size, and its inline chart.
        pdf = view.locator(".mail", has_text=mail.subject).locator("li", has_text="report.pdf")
        assert re.search(r"application/pdf · \d+\.\d kB", pdf.inner_text()), pdf.inner_text()
        listed = view.locator(".mail", has_text=mail.subject).locator(".attachments li").all_inner_texts()
        assert sorted(text.split(" ")[0] for text in listed) == ["kpi-trends.png", "report.pdf"]
        assert "shown in the message" in next(text for text in listed if text.startswith("kpi-trends.png"))
        view.screenshot(path=str(shots / "inbox.png"), full_page=False)

        with view.expect_download() as downloading:
            pdf.get_by_role("link", name="download").click()
        download = downloading.value
        assert download.suggested_filename == "report.pdf"
        assert Path(download.path()).read_bytes() == report

        # Opened rather than downloaded: Chromium is handed the PDF as a PDF, to show in its own viewer (the
        # body Playwright reports is then the viewer's page, so the bytes are checked by the download above).
        with chromium.expect_page() as opening, \
                chromium.expect_event("response", lambda r: "/attachment/" in r.url) as answer:
            pdf.get_by_role("link", name="report.pdf").click()
        assert answer.value.status == 200 and answer.value.headers["content-type"] == "application/pdf"
        assert answer.value.headers["content-disposition"].startswith('inline; filename="report.pdf"')
        opened = opening.value
        opened.wait_for_load_state("load")
        opened.wait_for_timeout(1500)  # the viewer draws the first page after the load event
        opened.screenshot(path=str(shots / "pdf-opened.png"))
        opened.close()

        view.goto(f"{gateway.url}/inbox/{mail.key}")
        view.wait_for_load_state("load")
        assert view.evaluate("() => Array.from(document.images).every(i => i.naturalWidth > 0)")
        assert view.locator(".attachments li", has_text="report.pdf").count() == 1
        view.screenshot(path=str(shots / "mail.png"), full_page=True)
