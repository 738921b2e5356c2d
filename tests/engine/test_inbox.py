from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from engine import channels
from engine.settings import get_settings
from engine.templates import Message
from tests import browser
from tests.conftest import Gateway, Mailbox


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
