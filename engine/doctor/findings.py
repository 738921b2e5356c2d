"""What a check finds: a status, what was found, and the fix (the exact variable or command) when it is not OK."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    ok = "OK"
    warn = "WARN"
    fail = "FAIL"
    skipped = "SKIP"


@dataclass(frozen=True)
class Finding:
    """One check's verdict on one part: its name, the status, what was found, and what to do unless all is well."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Finding:
    return Finding(name, Status.ok, detail)


def warn(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, Status.warn, detail, fix)


def fail(name: str, detail: str, fix: str) -> Finding:
    return Finding(name, Status.fail, detail, fix)


def skipped(name: str, why: str) -> Finding:
    return Finding(name, Status.skipped, f"skipped ({why})")


def failed(findings: Sequence[Finding]) -> bool:
    return any(finding.status is Status.fail for finding in findings)


def first_line(error: BaseException) -> str:
    """An exception's first line, short: drivers add pages of context after it."""
    return (str(error).strip().splitlines() or [""])[0][:300] or type(error).__name__


def masked_url(url: str) -> str:
    """A database URL with its password shown as ***."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"


def render(findings: Sequence[Finding]) -> str:
    """The findings as `ops doctor` prints them: a line each, its fix under it, then the count."""
    width = max((len(finding.name) for finding in findings), default=0)
    lines: list[str] = []
    for finding in findings:
        lines.append(f"{finding.status.value:<4}  {finding.name:<{width}}  {finding.detail}")
        if finding.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {finding.fix}")
    count = {status: sum(finding.status is status for finding in findings) for status in Status}
    lines.append(f"{count[Status.fail]} failed, {count[Status.warn]} warning(s), {count[Status.ok]} ok, "
                 f"{count[Status.skipped]} skipped")
    return "\n".join(lines)
