"""The trivial flow benchmarks/pool_throughput.py starts beside the real processes, and how each topology gets it.

It is the benchmark's own: never in prefect.yaml. On the work pool it is registered by module path (as `ops deploy`
registers ours), so a worker imports it from the checkout on PYTHONPATH; on one machine a runner of its own serves
it beside `ops serve` (which serves prefect.yaml's deployments only).
"""

from __future__ import annotations

from typing import Any, cast

from prefect import flow

TRIVIAL_FLOW = "throughput-trivial"
DEPLOYMENT = "bench"


@flow(name=TRIVIAL_FLOW, persist_result=False)
def trivial() -> str:
    """Does nothing: what a flow run costs Prefect and the process that runs it, and no more."""
    return "ok"


def deploy_on_pool(pool: str) -> str:
    """The trivial flow's deployment on the work pool `pool`, by module path; returns its id."""
    from prefect.deployments.runner import EntrypointType

    deployment: Any = trivial.to_deployment(name=DEPLOYMENT, work_pool_name=pool,
                                            entrypoint_type=EntrypointType.MODULE_PATH)
    return str(deployment.apply())


def serve(limit: int, poll_seconds: float) -> None:
    """Serve the trivial flow's deployment from this process, at most `limit` runs at once, polling as `ops serve`
    does."""
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    prefect_serve(cast(RunnerDeployment, trivial.to_deployment(name=DEPLOYMENT)), print_starting_message=False,
                  limit=limit, pause_on_shutdown=False, query_seconds=poll_seconds)
