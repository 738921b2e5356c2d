"""Beyond one machine: prefect.yaml's deployments on a Prefect process work pool (`ops deploy`), and the worker
that runs them on any machine (`ops worker`).

Where a worker finds the code: each deployment's entrypoint is its flow's module path
(flows.compliance.audit.flow.compliance_audit), imported from the opsdirector installed where the worker runs.
Nothing is pulled or copied and no path of the deploying machine is stored, so a worker runs in any directory
(each flow run in an empty temporary one, Prefect's process-worker default); the templates and prefect.yaml are
found beside the installed packages (engine.templates, engine.deployments.PROJECT_ROOT), never in the cwd.
`prefect deploy --all` would store this checkout's path as a `set_working_directory` pull step and register none
of our Run forms (engine.deployments._as_a_filled_form), so `ops deploy` registers through the Python API instead.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from engine.deployments import PREFECT_YAML, register, specs

POOL_TYPE = "process"


@dataclass(frozen=True)
class Deployed:
    """What `ops deploy` did: the pool, whether it created it, every deployment's id, those registered now."""

    pool: str
    created_pool: bool
    ids: dict[str, UUID]
    registered: list[str]


def pool_name(path: Path = PREFECT_YAML) -> str:
    """The one work pool prefect.yaml's deployments name; a deployment without one, or two pools, is refused."""
    named = {spec.name: spec.work_pool.get("name") for spec in specs(path)}
    if missing := sorted(name for name, pool in named.items() if not pool):
        raise ValueError(f"{path}: deployment(s) {', '.join(missing)} name no work_pool (every one needs "
                         "`work_pool: *default_pool`)")
    pools = sorted({str(pool) for pool in named.values()})
    if len(pools) != 1:
        raise ValueError(f"{path}: the deployments name work pools {', '.join(pools)}; `ops worker` serves one")
    return pools[0]


def ensure_pool(name: str) -> bool:
    """The process work pool `name` exists on the API; True when it was created now. A pool of another type is
    refused: its workers would not run our flows as processes beside an installed opsdirector."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=name, type=POOL_TYPE, base_job_template=ProcessWorker.get_default_base_job_template(),
                    description="opsdirector: every deployment of prefect.yaml; `ops worker` on each machine."))
            except ObjectAlreadyExists:  # another `ops deploy` (or a worker starting) created it meanwhile
                return False
            return True
    if pool.type != POOL_TYPE:
        raise ValueError(f"work pool {name!r} is of type {pool.type!r}, not {POOL_TYPE!r}: delete it or name "
                         "another pool in prefect.yaml")
    return False


def deploy(path: Path = PREFECT_YAML) -> Deployed:
    """Every deployment of prefect.yaml registered on its work pool (created if missing); a second call with the
    same prefect.yaml and code changes nothing (engine.deployments.register compares versions)."""
    name = pool_name(path)
    created = ensure_pool(name)
    ids, registered = register(path, on_pool=True)
    return Deployed(pool=name, created_pool=created, ids=ids, registered=registered)


def worker_environment(env_file: Path = Path(".env")) -> dict[str, str]:
    """OPS_ variables of this directory's .env that the environment does not already set.

    The worker reads its settings from here, but each flow run is a process of its own in an empty temporary
    directory, where no .env is found: the worker hands them on in the environment its flow runs inherit.
    """
    if not env_file.is_file():
        return {}
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(env_file).items()
            if key.startswith("OPS_") and value is not None and key not in os.environ}


def default_worker_name() -> str:
    """host and directory (its last two parts: Prefect refuses a '/' in a worker's name), so the Prefect UI's
    workers tab says which machine and which installation each one is."""
    return f"{socket.gethostname()} {' '.join(Path.cwd().parts[-2:])}".replace("%", " ")


def run_worker(pool: str, *, limit: int | None, poll_seconds: float, name: str | None = None) -> None:
    """A Prefect process worker polling `pool` until it is stopped (SIGTERM, Ctrl-C).

    A run becoming Scheduled (an approval resuming a run, a Run click) wakes the worker at once through Prefect's
    event stream (engine/run_wake.py); the poll interval is the fallback when the stream is down. A suspended
    run's process has exited, so it holds none of the `limit` slots: a worker with limit 1 starts other runs while
    an audit waits for its sign-off.
    """
    # Prefect reads its settings when first imported: the poll interval must be in the environment before then.
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = f"{poll_seconds:g}"
    import asyncio
    import contextlib
    import signal

    from prefect.workers.process import ProcessWorker

    class _EngineProcessWorker(ProcessWorker):
        """Each flow run one process, `python -m prefect.engine`, as `ops serve` starts them. Prefect 3.9's default
        starts a workspace supervisor first (a second Python importing Prefect, to pull code and install its
        dependencies), which our installed package never needs: seconds of CPU on every start and every resume."""

        async def run(self, flow_run: Any, configuration: Any, task_status: Any = None) -> Any:
            configuration._command_configured = True  # its command is already this interpreter's prefect.engine
            return await super().run(flow_run, configuration, task_status)

    async def _work() -> None:
        worker = _EngineProcessWorker(work_pool_name=pool, name=name or default_worker_name(), limit=limit)
        # SIGTERM or Ctrl-C stops the worker and the runs it is running (each gets a SIGTERM and ends Crashed):
        # another worker's sweep takes them over (engine/takeover.py), as after a lost machine. Prefect's own
        # handler (a KeyboardInterrupt raised wherever the loop is) can land in a callback that swallows it.
        main = asyncio.current_task()
        assert main is not None
        for stop in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(stop, main.cancel)
        from engine.run_wake import woken_while

        async def poll() -> None:
            if worker.is_setup:
                await worker.get_and_submit_flow_runs()

        with contextlib.suppress(asyncio.CancelledError):
            await woken_while(worker.start(), poll)

    asyncio.run(_work())
