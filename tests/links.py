"""Answering links in tests as a person's browser would: open the link (GET), read its form, submit it (POST)."""

from __future__ import annotations

import re
from html import unescape

import httpx

LINK = re.compile(r'href="(https?://[^"]+/s/[A-Za-z0-9_\-]+)"')


def links_in(html: str) -> list[str]:
    return [unescape(u) for u in LINK.findall(html)]


def answer_link(client: httpx.Client, url: str, fields: dict[str, str],
                files: dict[str, tuple[str, bytes]] | None = None) -> httpx.Response:
    """Open a link and submit its form with `fields`."""
    page = client.get(url)
    page.raise_for_status()
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return client.post(url, data={**hidden, **fields}, files=files or None)
