"""Reports printed to PDF: what a report may show is what lies beside it or what it carries itself."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

from engine.reports import save_pdf


def _png(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 20), colour).save(out, "PNG")
    return out.getvalue()


def _images(path: Path) -> int:
    return sum(len(page.images) for page in PdfReader(path).pages)


def test_a_chart_embedded_as_a_data_uri_prints_and_a_file_elsewhere_on_disk_does_not(registry_db: str,
                                                                                       tmp_path: Path) -> None:
    embedded = f"data:image/png;base64,{base64.b64encode(_png('navy')).decode()}"
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(_png("red"))
    carried = save_pdf("test/carried.pdf", f'<html><body><img src="{embedded}"></body></html>')
    refused = save_pdf("test/refused.pdf", f'<html><body><img src="{elsewhere.as_uri()}"></body></html>')
    assert _images(carried.path) == 1
    assert _images(refused.path) == 0, "a report never prints a file from outside its own folder"
