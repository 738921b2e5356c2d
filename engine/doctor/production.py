"""Production mode: the secrets Settings refuses to default (its own refusal, reported), no mail catcher, no inbox
page on the running gateway, a real mail server."""

from __future__ import annotations

import httpx

from engine.doctor.context import TIMEOUT_SECONDS, Doctor
from engine.doctor.findings import Finding, fail, ok, skipped, warn

_NEW_KEY = "`python -c 'import secrets; print(secrets.token_hex(32))'` makes one"


def check_production(doctor: Doctor) -> list[Finding]:
    settings = doctor.settings
    if settings.mode != "production":
        return [skipped("production secrets", "OPS_MODE=development allows the embedded defaults; "
                                              "OPS_MODE=production refuses them")]
    found = []
    for refusal in doctor.refusals:
        found.append(fail("production secrets", refusal,
                          f"set the variable it names ({_NEW_KEY}) in the environment of every process, never in "
                          "the repository"))
    if not doctor.refusals:
        found.append(ok("production secrets", "OPS_SECRET_KEY and OPS_TRAIL_KEY set, not the embedded defaults"))
    found.append(_inbox_off(doctor))
    if "mail_url" not in settings.model_fields_set:
        found.append(warn("production mail", f"OPS_MAIL_URL is unset: mail goes to {settings.smtp_host}:"
                                             f"{settings.smtp_port}, the local mail catcher's address",
                          "set OPS_MAIL_URL=mailtos://user:password@smtp.example.com?from=ops%40example.com"))
    return found


def _inbox_off(doctor: Doctor) -> Finding:
    """Settings never serve the catcher in production; the gateway actually running might have been started
    otherwise, so it is asked."""
    name, url = "inbox off", doctor.settings.gateway_url.rstrip("/")
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
            status = client.get(f"{url}/inbox").status_code
    except httpx.HTTPError:
        return ok(name, "no mail catcher in production (the gateway does not answer: see its check)")
    if status == 200:
        return fail(name, f"the gateway at {url} serves the caught-mail inbox: it runs in development mode, handing "
                          "out live links", "restart the gateway with OPS_MODE=production")
    if status != 404:
        return warn(name, f"the gateway at {url} answered {status} for /inbox, not 404: it may serve the inbox",
                    "restart the gateway with OPS_MODE=production")
    return ok(name, f"no mail catcher, and the gateway at {url} serves no inbox")
