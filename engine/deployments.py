"""prefect.yaml as the single source of deployments, for `ops serve` (prefect.serve does not read it)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import yaml

if TYPE_CHECKING:
    from prefect.runner import Runner

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
# Everything a deployment's registered form (parameter schema, description, entrypoint) is built from.
_SOURCE_PACKAGES = ("engine", "flows", "registry")


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    entrypoint: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    # prefect.yaml's `work_pool` (name, work_queue_name): where `ops deploy` puts it; `ops serve` serves it itself.
    work_pool: dict[str, Any] = field(default_factory=dict)
    # prefect.yaml's `concurrency_limit`: a number, or {limit, collision_strategy}; under `ops serve` and workers.
    concurrency_limit: int | dict[str, Any] | None = None


def specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    document = yaml.safe_load(path.read_text())
    return [
        DeploymentSpec(name=d["name"], entrypoint=d["entrypoint"], description=d.get("description", ""),
                       tags=list(d.get("tags") or []), parameters=dict(d.get("parameters") or {}),
                       schedules=list(d.get("schedules") or []), work_pool=dict(d.get("work_pool") or {}),
                       concurrency_limit=d.get("concurrency_limit"))
        for d in document.get("deployments", [])
    ]


def module_entrypoint(entrypoint: str) -> str:
    """prefect.yaml's file entrypoint as the module path of the installed package: flows/x/flow.py:f → flows.x.flow:f.
    """
    path, _, name = entrypoint.partition(":")
    return f"{path.removesuffix('.py').replace('/', '.')}:{name}"


def import_flow_modules(path: Path = PREFECT_YAML) -> list[str]:
    """Import every module prefect.yaml names, so what they register (the forms people answer) is known here.

    The gateway answers for every process without a list of them: a process's form lives in its own module.
    """
    modules = sorted({spec.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".") for spec in specs(path)})
    for module in modules:
        importlib.import_module(module)
    return modules


def code_fingerprint(known_choices: dict[str, list[str]] | None = None) -> str:
    """A hash of what turns prefect.yaml into registered deployments, besides prefect.yaml itself.

    Conservative on purpose: any change to our source (a parameter model, a docstring), to Prefect or pydantic (they
    build the parameter schema), or to the working directory (Prefect stores entrypoints relative to it) changes
    it, and every deployment is registered again. Reading the files costs milliseconds; importing the flows to
    compare their actual schemas would cost a second of CPU on every start, while the Prefect server starts.
    `known_choices`: the forms' dropdown values (engine.choices.choices) if read already; else they are read here.
    """
    from importlib import metadata

    from engine.choices import choices, choices_fingerprint

    libraries = "".join(f"{name} {metadata.version(name)}\n" for name in ("prefect", "pydantic"))
    # The registry's frameworks, facilities and drill kinds are the forms' dropdowns (engine.parameters).
    known = choices() if known_choices is None else known_choices
    digest = hashlib.sha256(f"{libraries}cwd {Path.cwd()}\nchoices {choices_fingerprint(known)}\n".encode())
    for package in _SOURCE_PACKAGES:
        for source in sorted((PROJECT_ROOT / package).rglob("*.py")):
            digest.update(str(source.relative_to(PROJECT_ROOT)).encode() + b"\0" + source.read_bytes() + b"\0")
    return digest.hexdigest()


def definition_version(spec: DeploymentSpec, fingerprint: str) -> str:
    """The deployment's `version` in Prefect: a hash of its prefect.yaml entry and of the code it is built from."""
    document = json.dumps({**asdict(spec), "code": fingerprint}, sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def runner_deployments(path: Path = PREFECT_YAML, only: set[str] | None = None,
                       fingerprint: str | None = None, on_pool: bool = False) -> list[Any]:
    """Deployments in prefect.yaml (those named in `only`, or all) as RunnerDeployments, flows loaded from their
    entrypoints, each versioned by its definition (definition_version).

    `on_pool`: for the work pool prefect.yaml names (`ops deploy`). The entrypoint is then the flow's module path
    (flows.compliance.audit.flow.compliance_audit), which a worker imports from the installed package in whatever
    directory it runs: a file path would name this checkout, and Prefect would copy or look for it there.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
    from prefect.deployments.runner import EntrypointType, VersionType
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    from engine import parameters
    from engine.choices import choices

    fingerprint = fingerprint or code_fingerprint()
    known = choices()
    built = []
    for spec in specs(path):
        if only is not None and spec.name not in only:
            continue
        entrypoint = module_entrypoint(spec.entrypoint) if on_pool else str(PROJECT_ROOT / spec.entrypoint)
        flow: Any = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                     for s in spec.schedules]
        limit = spec.concurrency_limit
        pool = ({"work_pool_name": spec.work_pool.get("name"), "work_queue_name": spec.work_pool.get("work_queue_name"),
                 "entrypoint_type": EntrypointType.MODULE_PATH} if on_pool else {})
        # A simple version: Prefect would otherwise probe git and CI variables on every registration.
        deployment = flow.to_deployment(
            name=spec.name, schedules=schedules, parameters=spec.parameters, tags=spec.tags,
            version=definition_version(spec, fingerprint), version_type=VersionType.SIMPLE,
            concurrency_limit=ConcurrencyLimitConfig(**limit) if isinstance(limit, dict) else limit, **pool,
        )
        if not on_pool:  # said, not left unset: a deployment `ops deploy` put on the pool is taken off it
            deployment.work_pool_name = None
        if isinstance(flow, parameters.ProcessFlow):
            _as_a_filled_form(deployment, flow.parameters_model, spec, known)
        built.append(deployment)
    return built


def _as_a_filled_form(deployment: Any, model: Any, spec: DeploymentSpec, known: dict[str, list[str]]) -> None:
    """The Run form with the registry's values as dropdowns and every default filled in.

    The deployment holds every default (prefect.yaml's over the model's), so the form opens filled and a run
    started with some parameters (a follow-up, `ops run`) gets the rest; a field with a default is then required
    (no "(Optional)" on it); a text field whose empty value means something ("every vendor") stays optional.
    """
    from engine.parameters import defaults, form_schema

    schema = form_schema(model, known)
    # A default the registry does not hold (a framework not set up) is left for the person to choose.
    filled = {name: value for name, value in {**defaults(model), **spec.parameters}.items()
              if value in schema.properties.get(name, {}).get("enum", [value])}
    schema.required = [name for name, prop in schema.properties.items()
                       if name in schema.required or filled.get(name, "") != "" or "default" not in prop]
    for prop in schema.properties.values():
        if prop.get("type") == "object" and "properties" in prop:  # a group (score weights): filled as a whole
            prop["required"] = list(prop["properties"])
    deployment._parameter_openapi_schema = schema
    deployment.parameters = filled


def _api_url() -> str:
    if url := os.environ.get("PREFECT_API_URL"):
        return url.rstrip("/")
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value() or "").rstrip("/")


def _held(api: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """The API's deployments of these names, as JSON; {} when they cannot be read (all are then registered).

    Read over plain HTTP: Prefect's client would have this process import Prefect (a second of CPU) before `ops up`
    can say it is up, while the Prefect server, starting, needs the CPU.
    """
    import httpx

    auth = os.environ.get("PREFECT_API_AUTH_STRING")  # Prefect's basic-auth login, user:password
    basic = httpx.BasicAuth(*auth.split(":", 1)) if auth and ":" in auth else None
    try:
        with httpx.Client(timeout=10, auth=basic) as client:
            response = client.post(f"{api}/deployments/filter", json={"deployments": {"name": {"any_": names}}})
            response.raise_for_status()
            return {d["name"]: d for d in response.json()}
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return {}


def _registered_as_defined(spec: DeploymentSpec, version: str, held: dict[str, Any] | None,
                           pool: str | None = None) -> bool:
    """Whether the API holds this definition, unpaused, with its schedules on as prefect.yaml sets them, served
    by `ops serve` (no work pool) or on the work pool `pool`.

    A schedule switched off in the UI, or a deployment paused there, is switched back on by the next start, as
    registering every deployment on every start always did.
    """
    if held is None or held.get("version") != version or held.get("paused"):
        return False
    if held.get("work_pool_name") != pool:  # the same definition, served by the other topology
        return False
    have = sorted((s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"])
                  for s in held.get("schedules") or [])
    want = sorted((s["cron"], s.get("timezone"), s.get("active", True)) for s in spec.schedules)
    return have == want


def register(path: Path = PREFECT_YAML, fingerprint: str | None = None,
             built: list[Any] | None = None, on_pool: bool = False) -> tuple[dict[str, UUID], list[str]]:
    """Every deployment in prefect.yaml registered with the API: (their ids by name, the names registered now).

    Only those the API does not hold as defined are registered: registering one costs an upsert, a replacement of
    its schedules (the server then drops and re-creates its scheduled runs) and a sweep of its automations, about
    0.1 s each, and importing the flows to build them; a second or two on every start, for nothing. `built`: the
    RunnerDeployments, if they were built already. `on_pool`: on prefect.yaml's work pool (runner_deployments).
    """
    wanted = specs(path)
    fingerprint = fingerprint or code_fingerprint()
    versions = {spec.name: definition_version(spec, fingerprint) for spec in wanted}
    held = _held(_api_url(), list(versions))
    ids = {spec.name: UUID(held[spec.name]["id"]) for spec in wanted
           if _registered_as_defined(spec, versions[spec.name], held.get(spec.name),
                                     spec.work_pool.get("name") if on_pool else None)}
    changed = {spec.name for spec in wanted} - set(ids)
    if changed:
        for deployment in built or runner_deployments(path, only=changed, fingerprint=fingerprint, on_pool=on_pool):
            if deployment.name in changed:
                ids[deployment.name] = deployment.apply()
    return ids, sorted(changed)


def _registered_record() -> Path | None:
    """Where `ops serve` notes which definitions it last registered, and with which API: a hint, never the truth."""
    home = os.environ.get("PREFECT_HOME")
    return Path(home) / "registered-deployments.json" if home else None


def _last_registered(record: Path | None, server: str) -> dict[str, str] | None:
    try:
        noted = json.loads(record.read_text()) if record is not None else {}
    except (OSError, ValueError):
        return None
    return noted.get("versions") if isinstance(noted, dict) and noted.get("api") == server else None


def _hand_to(runner: Any, ids: dict[str, UUID], path: Path) -> None:
    """Have the runner serve these registered deployments: by id, all `Runner.add_deployment` keeps of one."""
    registry = getattr(runner, "_deployment_registry", None)  # prefect 3.9's; without it, register them again
    if registry is None:
        for deployment in runner_deployments(path):
            runner.add_deployment(deployment)
        return
    for name, deployment_id in ids.items():
        registry.register_deployment(deployment_id, name)


def serve_all(path: Path = PREFECT_YAML, poll_seconds: float = 0.5, api_wait_seconds: float = 0,
              ready_file: Path | None = None, limit: int | None = None, server: str | None = None,
              known_choices: dict[str, list[str]] | None = None) -> None:
    """Serve every deployment from this process; the poll interval bounds the wait after an approval; at most
    `limit` flow runs at once (None: no limit).

    Schedules stay active when this process stops (Prefect pauses them by default): a stopped or restarted stack
    must never leave the quarterly audit paused, and the runs that fall due meanwhile are picked up by the next
    `ops serve`. Beside the runner runs the engine loop (engine/loop.py: the deadline sweep, drill dispatch and run
    retention as function calls, not flow runs; one loop at a time across processes by its registry lease).

    With `api_wait_seconds`, the API is waited for, so `ops up` can start this process alongside the Prefect
    server rather than after it. `ready_file` gets this process's pid once every deployment is registered: a Run
    then works, and is picked up once the runner has started, about a second later. `server` names the Prefect
    server's database when its URL does not (`ops up`'s own server, on whichever port it was given this time): what
    was last registered is noted under it, else under the API's URL. `known_choices`: the forms' dropdown values
    as `ops up` read them (then this process need not import the registry while the server starts).
    """
    api = _api_url()
    fingerprint = code_fingerprint(known_choices)
    versions = {spec.name: definition_version(spec, fingerprint) for spec in specs(path)}
    record = _registered_record()
    # Something will be registered (a first start, a code change): the flows are imported while the server starts.
    # Else they are not imported at all (two seconds of CPU the server starting would lose); either way the API
    # decides what is registered.
    noted_as = server or api
    unchanged = _last_registered(record, noted_as) == versions
    built = None if unchanged else runner_deployments(path, fingerprint=fingerprint)
    if api_wait_seconds:
        from engine.stack import wait_until_up

        wait_until_up(f"{api}/health", api_wait_seconds, interval=0.02)
    ids, changed = register(path, fingerprint, built)
    print(f"serving {len(ids)} deployments; registered: {', '.join(changed) or 'none (all unchanged)'}", flush=True)
    if record is not None:
        with contextlib.suppress(OSError):
            record.write_text(json.dumps({"api": noted_as, "versions": versions}))
    if ready_file is not None:
        from engine.stack import mark_ready

        mark_ready(ready_file)

    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from engine.loop import engine_loop

    # Before the runner's first poll: it would start every missed run. A deployment without a schedule (the sweep,
    # whose every-minute schedule an older prefect.yaml had) keeps none: the engine loop does that work now.
    unscheduled = {ids[spec.name] for spec in specs(path) if not spec.schedules and spec.name in ids}
    if removed := collapse_missed_runs(list(ids), unscheduled=unscheduled):
        print(f"{removed} scheduled runs that fell due while nothing served them removed; "
              "one catch-up run per scheduled deployment kept", flush=True)
    runner = Runner(pause_on_shutdown=False, limit=limit, query_seconds=poll_seconds)
    _hand_to(runner, ids, path)
    with engine_loop(), contextlib.suppress(KeyboardInterrupt, TerminationSignal):
        asyncio.run(_serving(runner))


async def _serving(runner: Runner) -> None:
    """The runner, polling at once whenever a run becomes Scheduled (engine/run_wake.py) as well as on its timer."""
    from engine.run_wake import woken_while

    async def poll() -> None:
        if runner.started and not runner.stopping:
            await runner._get_and_submit_flow_runs()

    await woken_while(runner.start(), poll)


def collapse_missed_runs(names: list[str], unscheduled: set[UUID] | None = None) -> int:
    """Delete all but the latest of each deployment's scheduled runs that fell due while nothing served them.

    Schedules stay active while the stack is stopped (see serve_all), so a week off left several daily runs due
    at once; one catch-up run per deployment does what they would have done (a missed quarterly audit still runs,
    once). Of the deployments in `unscheduled` (their schedule since removed) none is kept. Only the scheduler's
    own runs go (auto-scheduled, never started): a Run a person asked for is kept. Returns how many were deleted.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterNextScheduledStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    late = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
        next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC)),
    )
    removed = 0
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_run_filter=late, limit=200,
                                         deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=names)),
                                         sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC)
            missed: dict[Any, list[Any]] = {}
            for run in runs:
                if run.auto_scheduled and run.run_count == 0:
                    missed.setdefault(run.deployment_id, []).append(run)
            superseded = [run for deployment, per_deployment in missed.items()
                          for run in (per_deployment if deployment in (unscheduled or set()) else per_deployment[:-1])]
            for run in superseded:
                client.delete_flow_run(run.id)
            removed += len(superseded)
            if len(runs) < 200 or not superseded:
                return removed
