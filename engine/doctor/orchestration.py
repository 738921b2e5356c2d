"""The Prefect side: the API and its database, the work pool, its workers, result storage shared between them,
and what several API replicas need (Redis for messaging and Docket)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.deployments import specs
from engine.doctor.context import ApiUnreachable, Doctor
from engine.doctor.findings import Finding, fail, ok, skipped, warn

HA_DOC = "https://docs.prefect.io/v3/advanced/self-hosted"
_MEMORY_DOCKET = "memory://"
_REDIS_SETTINGS = (
    "PREFECT_MESSAGING_BROKER=prefect_redis.messaging PREFECT_MESSAGING_CACHE=prefect_redis.messaging "
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING=prefect_redis.ordering "
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect_redis.lease_storage "
    "PREFECT_REDIS_MESSAGING_URL=redis://<host>:6379/0 PREFECT_SERVER_DOCKET_URL=redis://<host>:6379/1"
)
# Filesystems one machine's path can share with another's.
_SHARED_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "glusterfs", "ceph", "lustre", "gpfs", "9p",
                       "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs", "efs")
_DEPLOY = "`ops deploy` (it creates the process work pool and registers prefect.yaml's deployments on it)"
_WORKER = "start a worker on each machine, in its own directory with its .env: `ops worker`"
# A lost machine's runs wait this long to be taken over before the doctor says so: a drill is over in an hour.
_TAKEOVER_WARN_SECONDS = 300


def check_prefect_api(doctor: Doctor) -> list[Finding]:
    """The API answering /health, its version against the installed prefect, and its own database (/ready)."""
    import prefect

    if not doctor.api_url:
        return [fail("Prefect API", "PREFECT_API_URL is not set: each process would start a throwaway server",
                     "set PREFECT_API_URL=http://<host>:4200/api (the server every process and worker shares)")]
    url, health = doctor.api_url, doctor.health
    if isinstance(health, ApiUnreachable):
        return [fail("Prefect API", f"{url} does not answer: {health}",
                     "start the Prefect server (`ops up`, or `prefect server start`), or set PREFECT_API_URL to it")]
    if health.status_code != 200 or health.text.strip() != "true":
        return [fail("Prefect API", f"{url}/health answered {health.status_code} {health.text[:60]!r}",
                     "PREFECT_API_URL must end in /api and name a Prefect server")]
    found = [ok("Prefect API", f"{url} healthy")]
    version = doctor.api("GET", "/admin/version")
    theirs = str(version.json()) if version.status_code == 200 else "unknown"
    if theirs == prefect.__version__:
        found.append(ok("Prefect version", f"server and this machine both run prefect {theirs}"))
    elif theirs.split(".")[:2] == prefect.__version__.split(".")[:2]:
        found.append(warn("Prefect version", f"server runs prefect {theirs}, this machine {prefect.__version__}",
                          f"install prefect=={theirs} here (or upgrade the server) so both run one version"))
    else:
        found.append(fail("Prefect version", f"server runs prefect {theirs}, this machine {prefect.__version__}",
                          f"install prefect=={theirs} here (or upgrade the server): the API changes between minor "
                          "versions"))
    ready = doctor.api("GET", "/ready")
    said = _server_database(doctor)
    if ready.status_code == 200 and said and said[0] == "sqlite" and doctor.topology == "pool":
        found.append(warn("Prefect database", f"the server reaches its database, SQLite ({said[1]}): it answers 503 "
                                              "while its scheduler writes, and every worker waits on it",
                          f"give the server PostgreSQL: {said[1]}=postgresql+asyncpg://user:password@host/prefect"))
    elif ready.status_code == 200:
        kind = f", {said[0]} ({said[1]})" if said else ""
        found.append(ok("Prefect database", f"the server reaches its database{kind} (/ready)"))
    elif ready.status_code == 503:
        found.append(fail("Prefect database", "the server cannot reach its database (/ready answered 503)",
                          "check the server's PREFECT_API_DATABASE_CONNECTION_URL and that its database runs"))
    return found


def _server_database(doctor: Doctor) -> tuple[str, str] | None:
    """(its backend, the variable saying it) of the Prefect server's database, when the server is on this machine
    and this machine's settings name its database (`ops up`'s OPS_PREFECT_DATABASE_URL, or Prefect's own)."""
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if urlsplit(doctor.api_url or "").hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    named = [("OPS_PREFECT_DATABASE_URL", doctor.settings.prefect_database_url)]
    named += [(name, os.environ.get(name)) for name in ("PREFECT_SERVER_DATABASE_CONNECTION_URL",
                                                         "PREFECT_API_DATABASE_CONNECTION_URL")]
    for name, url in named:
        if url:
            try:
                return make_url(url).get_backend_name(), name
            except ArgumentError:
                return "unreadable", name
    return None


def _topology_skip(doctor: Doctor, name: str) -> Finding | None:
    if doctor.topology is None:
        return skipped(name, "the Prefect API does not answer, so the topology is unknown")
    if doctor.topology == "local":
        return skipped(name, f"one machine: `ops serve` runs every deployment{doctor.topology_said}; "
                             "`ops doctor --topology pool` checks workers")
    return None


def check_work_pool(doctor: Doctor) -> list[Finding]:
    """The pool prefect.yaml names, present, a process pool, not paused, holding prefect.yaml's deployments."""
    name = "work pool"
    if (skip := _topology_skip(doctor, name)) is not None:
        return [skip]
    if not doctor.api_answers:
        return [skipped(name, "the Prefect API does not answer")]
    pool = doctor.pool
    if pool is None:
        return [fail(name, f"no work pool {doctor.pool_name!r} on the API (prefect.yaml's deployments name it)",
                     _DEPLOY)]
    if pool.get("is_paused"):
        return [fail(name, f"{doctor.pool_name!r} is paused: no worker starts a run",
                     f"prefect work-pool resume {doctor.pool_name}")]
    found = [ok(name, f"{doctor.pool_name!r} ({pool.get('type')}) present")]
    if pool.get("type") != "process":
        found = [warn(name, f"{doctor.pool_name!r} is a {pool.get('type')} pool, not a process pool",
                      f"delete it (`prefect work-pool delete {doctor.pool_name}`) and run {_DEPLOY}")]
    held, wanted = doctor.deployments, {spec.name for spec in specs(doctor.prefect_yaml)}
    off = sorted(n for n, d in held.items() if d.get("work_pool_name") != doctor.pool_name)
    missing = sorted(wanted - set(held))
    if off or missing:
        found.append(warn("deployments", f"{len(off + missing)} of prefect.yaml's {len(wanted)} not on the pool: "
                                         f"{', '.join(off + missing)}", _DEPLOY))
    else:
        found.append(ok("deployments", f"all {len(held)} of prefect.yaml on {doctor.pool_name!r}"))
    return found


def _heartbeat_rule(doctor: Doctor) -> tuple[int, int]:
    """(how many heartbeats a worker may miss, the interval assumed when it gave none): the server's own foreman
    settings when it shows them, else this environment's."""
    foreman = ((doctor.server_settings or {}).get("server", {}).get("services", {}).get("foreman"))
    if foreman:
        return int(foreman["inactivity_heartbeat_multiple"]), int(foreman["fallback_heartbeat_interval_seconds"])
    local = doctor.prefect.server.services.foreman
    return int(local.inactivity_heartbeat_multiple), int(local.fallback_heartbeat_interval_seconds)


@dataclass(frozen=True)
class _Heartbeat:
    name: str
    age_seconds: float | None  # since its last heartbeat; None: never sent one
    every: int
    alive: bool


def _heartbeats(doctor: Doctor) -> list[_Heartbeat]:
    """The pool's workers, most recent heartbeat first, alive when it came within the missed-heartbeat allowance."""
    multiple, fallback = _heartbeat_rule(doctor)
    now = datetime.now(UTC)
    found = []
    for worker in doctor.workers:
        beat = worker.get("last_heartbeat_time")
        age = (now - datetime.fromisoformat(beat)).total_seconds() if beat else None
        every = int(worker.get("heartbeat_interval_seconds") or fallback)
        found.append(_Heartbeat(worker["name"], age, every, age is not None and age <= multiple * every))
    return sorted(found, key=lambda h: float("inf") if h.age_seconds is None else h.age_seconds)


def check_workers(doctor: Doctor) -> list[Finding]:
    """The pool's workers, each with its last heartbeat; FAIL when none is alive."""
    name = "workers"
    if (skip := _topology_skip(doctor, name)) is not None:
        return [skip]
    if not doctor.api_answers:
        return [skipped(name, "the Prefect API does not answer")]
    if doctor.pool is None:
        return [skipped(name, f"no work pool {doctor.pool_name!r}")]
    multiple, _ = _heartbeat_rule(doctor)
    beats = _heartbeats(doctor)
    alive = [beat for beat in beats if beat.alive]
    if alive:
        found = [ok(name, f"{len(alive)} alive on {doctor.pool_name!r}")]
    else:
        found = [fail(name, f"no worker alive on {doctor.pool_name!r}: scheduled and started runs wait", _WORKER)]
    for beat in beats:
        said = (f"{beat.name}: last heartbeat "
                f"{'never' if beat.age_seconds is None else f'{beat.age_seconds:.0f} s ago'} (every {beat.every} s)")
        if beat.alive:
            found.append(ok("worker", said))
        elif beat.age_seconds is not None and beat.age_seconds < 86400:  # one gone for a day was retired
            found.append(warn("worker", f"{said}: gone (more than {multiple} heartbeats missed)",
                              "restart it, or ignore it if that machine was retired"))
    found.append(_takeover_delay())
    return found


def _takeover_delay() -> Finding:
    """How soon a run whose machine was lost is taken over, as this machine's heartbeat setting makes it."""
    from engine.takeover import silence_allowed

    seconds = silence_allowed().total_seconds()
    said = f"a run on a lost machine is taken over {seconds:.0f} s after its last heartbeat"
    if seconds <= _TAKEOVER_WARN_SECONDS:
        return ok("run take-over", said)
    return warn("run take-over", f"{said} (PREFECT_FLOWS_HEARTBEAT_FREQUENCY unset or long): a drill on a machine "
                "that dies waits that long", "set PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 on every worker (90 s)")


def check_result_storage(doctor: Doctor) -> Finding:
    """With several workers, persisted results must be where each can read them: a block, or a shared path."""
    name = "result storage"
    if (skip := _topology_skip(doctor, name)) is not None:
        return skip
    if not doctor.api_answers or doctor.pool is None:
        return skipped(name, "no work pool to check")
    alive = sum(beat.alive for beat in _heartbeats(doctor))
    if alive < 2:
        return skipped(name, f"{alive} worker{'' if alive == 1 else 's'} alive: nothing to share")
    results = doctor.prefect.results
    if results.default_storage_block:
        return ok(name, f"block {results.default_storage_block} (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK here; every "
                        "worker must set the same)")
    server = doctor.api("GET", "/admin/storage")
    if server.status_code == 200 and (block := server.json().get("default_result_storage_block_id")):
        return ok(name, f"the server's default result storage block ({block})")
    path = Path(results.local_storage_path)
    if (kind := _filesystem_of(path)) in _SHARED_FILESYSTEMS:
        return ok(name, f"{path}, on a shared filesystem ({kind}); every worker must mount it at the same path")
    return warn(name, f"{alive} workers alive and results go to a local path, {path} ({kind or 'local disk'}; "
                      "PREFECT_RESULTS_LOCAL_STORAGE_PATH as this machine sets it): a result one worker persists "
                      "is not found by another",
                "on every worker set PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK=<block-type>/<block-name> (e.g. an "
                "s3-bucket or remote-file-system block), or `prefect experimental result-storage set "
                "<block-type>/<block-name>` once for the server; or PREFECT_RESULTS_LOCAL_STORAGE_PATH to one shared "
                "mount (NFS)")


def _filesystem_of(path: Path) -> str | None:
    """The type of the filesystem holding `path` (Linux /proc/mounts; None elsewhere or when unknown)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fields[2])
    return best[1] if best else None


def check_high_availability(doctor: Doctor) -> Finding:
    """In production: warn when the Prefect server's messaging and Docket are in memory (one API server only)."""
    name = "high availability"
    if doctor.settings.mode != "production":
        return skipped(name, "development mode: one Prefect API server")
    seen = doctor.server_settings
    if seen is not None:
        server = seen.get("server", {})
        broker = server.get("events", {}).get("messaging_broker", "")
        docket = server.get("docket", {}).get("url", "")
        source = "the server's settings"
    else:
        broker = doctor.prefect.server.events.messaging_broker
        docket = doctor.prefect.server.docket.url
        source = "this environment's Prefect settings (the server does not show its own)"
    in_memory = [what for what, memory in (("messaging broker", broker.endswith(".memory")),
                                           ("Docket", docket.startswith(_MEMORY_DOCKET))) if memory]
    if not in_memory:
        return ok(name, f"messaging on {broker}, Docket on {docket.split('://', 1)[0]}:// ({source})")
    return warn(name, f"{' and '.join(in_memory)} in memory ({source}): fine for one Prefect API server; with "
                      "several replicas events are not shared and scheduled runs may be duplicated",
                f"for several API replicas: pip install prefect-redis, set on every server {_REDIS_SETTINGS}, run "
                f"one `prefect server services start` and the replicas with `prefect server start --no-services` "
                f"({HA_DOC})")
