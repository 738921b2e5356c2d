"""`ops doctor`: a configuration checked before it is trusted, part by part, with what is wrong and how to fix it.

Each check is a small function of a `Doctor` (the settings, the Prefect API, the topology) returning findings; one
that raises becomes a FAIL naming the exception, never a traceback. Every outside call has a short timeout (an
unreachable host costs seconds, not a hang), and nothing is changed anywhere: the registry and the Prefect API are
read, the mail server gets EHLO and QUIT, the gateway a GET of its health route. Every secret the configuration
holds is taken out of what is printed, wherever a library put it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from engine.doctor.context import Doctor, Topology, Unreadable, load_settings
from engine.doctor.findings import Finding, Status, fail, failed, first_line, render
from engine.doctor.orchestration import (
    check_high_availability,
    check_prefect_api,
    check_result_storage,
    check_work_pool,
    check_workers,
)
from engine.doctor.production import check_production
from engine.doctor.services import check_gateway, check_mail, check_registry
from engine.settings import Settings

Check = Callable[[Doctor], "Finding | Sequence[Finding]"]

CHECKS: list[tuple[str, Check]] = [
    ("registry database", check_registry),
    ("Prefect API", check_prefect_api),
    ("work pool", check_work_pool),
    ("workers", check_workers),
    ("result storage", check_result_storage),
    ("gateway", check_gateway),
    ("mail server", check_mail),
    ("production secrets", check_production),
    ("high availability", check_high_availability),
]


def examine(doctor: Doctor, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[Finding]:
    """Every check in order; one that raises is a FAIL naming its exception. Secrets are taken out of all."""
    findings: list[Finding] = []
    for name, check in checks:
        try:
            found = check(doctor)
        except Exception as error:
            found = fail(name, f"the check itself failed: {type(error).__name__}: {first_line(error)}",
                         "fix what the error names, then run `ops doctor` again")
        findings.extend([found] if isinstance(found, Finding) else found)
    return [doctor.scrubbed(finding) for finding in findings]


TOPOLOGIES: dict[str, Topology] = {"auto": "auto", "local": "local", "pool": "pool"}


def diagnose(topology: Topology = "auto", pool: str | None = None,
             prepare: Callable[[Settings], None] | None = None) -> list[Finding]:
    """The configuration of this environment examined: the settings it reads, then every check.

    `prepare`: given the settings before any check runs (the CLI fills in the local stack's defaults with it, as
    every `ops` command does, so the doctor sees what the other commands would)."""
    try:
        settings, refusals = load_settings()
    except Unreadable as error:
        return [fail("settings", str(error), "correct the variable it names (OPS_…), or the .env file")]
    if prepare is not None:
        prepare(settings)
    doctor = Doctor(settings, refusals=refusals, topology=topology, pool=pool)
    try:
        return examine(doctor)
    finally:
        doctor.close()


__all__ = ["CHECKS", "TOPOLOGIES", "Doctor", "Finding", "Status", "diagnose", "examine", "failed", "load_settings",
           "render"]
