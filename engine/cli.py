"""`ops`: the command line of opsdirector."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import BaseModel

from engine.settings import get_settings

if TYPE_CHECKING:  # not imported for `ops up`, which starts the Prefect server first
    from engine.deployments import DeploymentSpec

app = typer.Typer(help="opsdirector: operational processes that run themselves.", no_args_is_help=True,
                  add_completion=False)


def _prepare() -> None:
    """Local-stack variables first: Prefect reads PREFECT_HOME only when it is imported."""
    from engine.stack import apply_local_environment

    apply_local_environment(get_settings())


@app.command()
def init(demo: Annotated[bool, typer.Option(help="Seed the demo organisation if it is missing.")] = True) -> None:
    """Create or upgrade the registry schema, and seed the demo organisation once."""
    _prepare()
    from registry import session
    from registry.demo import seed
    from registry.migrate import upgrade

    upgrade()
    created = False
    if demo:
        with session() as db:
            created = seed(db)
        _import_demo_data()
    typer.echo("registry ready" + ("; demo organisation seeded" if created else ""))


def _import_demo_data() -> None:
    """The demo's budgets (in the organisation's current year), vendors, deliveries, stock, purchase requests
    committed against the budgets, KPIs and risk register, once: later runs leave whatever staff changed alone.

    Each group is checked on its own, so a registry seeded before the KPIs existed still gets them.
    """
    import tempfile

    from sqlmodel import select

    from engine import periods
    from engine.deployments import PROJECT_ROOT
    from engine.importer import import_csv
    from registry import CostCentre, KpiDefinition, PurchaseRequest, RiskCategory, Vendor, session
    from registry.demo import budget_csv_for, seed_purchase_requests

    groups = (
        # Cost centres first: the demo's vendors are charged to them.
        (CostCentre, (("cost-centres", "cost_centres.csv"), ("budget-lines", "budget_lines.csv"),
                      ("actuals", "actuals.csv"))),
        (Vendor, (("vendors", "vendors.csv"), ("deliveries", "deliveries.csv"), ("inventory", "inventory.csv"))),
        (KpiDefinition, (("kpis", "kpis.csv"), ("kpi-measurements", "kpi_measurements.csv"))),
        # After the KPIs and the demo's controls (registry.demo.seed): the risks link to both.
        (RiskCategory, (("risk-categories", "risk_categories.csv"), ("risks", "risks.csv"))),
    )
    today = periods.today()
    with tempfile.TemporaryDirectory(prefix="ops-demo-") as moved:
        for marker, files in groups:
            with session() as db:
                if db.exec(select(marker.id).limit(1)).first() is not None:  # type: ignore[attr-defined]
                    continue
            _import_kinds()  # every process imported (0.3 s, once) only when there is something to import
            for kind, name in files:
                path = PROJECT_ROOT / "demo" / name
                if marker is CostCentre:  # the demo budget moves to the organisation's year
                    path = budget_csv_for(path, Path(moved) / name, today)
                report = import_csv(kind, path, actor="demo")
                typer.echo(f"demo {kind}: {report.inserted} imported")
    with session() as db:
        if db.exec(select(PurchaseRequest.id).limit(1)).first() is None:
            typer.echo(f"demo purchase-requests: {seed_purchase_requests(db, today)} imported")


@app.command()
def up() -> None:
    """Start the local stack: Prefect server and UI, every deployment, the link gateway and a mail catcher."""
    from engine import stack

    settings = get_settings()
    refusal = stack.leftovers(settings)
    if refusal is not None:
        typer.echo(refusal, err=True)
        raise typer.Exit(1)
    stack.apply_local_environment(settings, own_server=True)
    raise typer.Exit(stack.run(settings, prepare=lambda: init(demo=True)))


@app.command()
def down() -> None:
    """Stop the local stack started in this data dir, or whatever a killed `ops up` left running."""
    from engine import stack

    stopped = stack.down(get_settings())
    for process in stopped:
        typer.echo(f"stopped {process.describe()}")
    typer.echo("opsdirector is not running" if not stopped else "opsdirector stopped")


@app.command()
def status() -> None:
    """Which processes of the local stack run (exit 1 when none does)."""
    from engine.stack_record import StackRecord, is_alive

    recorded = StackRecord(get_settings().data_dir.resolve()).read()
    for process in recorded:
        typer.echo(f"{'running' if is_alive(process) else 'gone   '}  {process.describe()}")
    if not any(is_alive(process) for process in recorded):
        typer.echo("opsdirector is not running")
        raise typer.Exit(1)


@app.command()
def serve() -> None:
    """Serve every deployment in prefect.yaml from this process (what `ops up` runs)."""
    import os

    from engine.stack import (
        REGISTRY_READY_VARIABLE,
        SERVE_READY_VARIABLE,
        STACK_PID_VARIABLE,
        noted_choices,
        own_server,
        wait_until_marked,
    )

    if stack_pid := os.environ.get(STACK_PID_VARIABLE):
        from engine.die_with_parent import kill_group_when_orphaned

        kill_group_when_orphaned(int(stack_pid), grace=0)
    _prepare()
    known_choices = None
    if stack_pid and (registry_ready := os.environ.get(REGISTRY_READY_VARIABLE)):
        wait_until_marked(Path(registry_ready), stack_pid, 120)  # the forms' dropdowns: once it is seeded
        known_choices = noted_choices(Path(registry_ready))
    from engine.deployments import serve_all

    ready = os.environ.get(SERVE_READY_VARIABLE)
    settings = get_settings()
    serve_all(poll_seconds=settings.resume_poll_seconds, api_wait_seconds=120,
              ready_file=Path(ready) if ready else None, limit=settings.serve_limit,
              server=own_server(settings) if stack_pid else None, known_choices=known_choices)


@app.command()
def deploy() -> None:
    """Register every deployment of prefect.yaml on its process work pool (created if missing), for `ops worker`."""
    _prepare()
    from engine.pool import deploy as deploy_all

    try:
        done = deploy_all()
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"work pool {done.pool!r} {'created' if done.created_pool else 'present'}; {len(done.ids)} "
               f"deployments; registered: {', '.join(done.registered) or 'none (all unchanged)'}")


@app.command()
def worker(
    limit: Annotated[int | None, typer.Option(help="Most flow runs at once on this machine (a suspended run "
                                                   "holds none); default: no limit.")] = None,
    name: Annotated[str | None, typer.Option(help="The worker's name in the Prefect UI; default host and "
                                                  "directory.")] = None,
    pool_name: Annotated[str | None, typer.Option("--pool", help="The work pool to poll; default prefect.yaml's "
                                                                 "(where `ops deploy` puts every deployment).")]
    = None,
) -> None:
    """Run prefect.yaml's deployments on this machine: a Prefect process worker on their work pool, in this
    directory, with the settings of its environment (PREFECT_API_URL, OPS_DATABASE_URL, OPS_MAIL_URL, ...)."""
    import os

    from engine import pool

    os.environ.update(pool.worker_environment())
    _prepare()
    from engine.loop import engine_loop

    # Every worker hosts the engine loop (sweep, drill dispatch); its registry lease lets one act at a time.
    with engine_loop():
        pool.run_worker(pool_name or pool.pool_name(), limit=limit, poll_seconds=get_settings().resume_poll_seconds,
                        name=name)


@app.command()
def gateway() -> None:
    """Run only the link gateway (behind a TLS proxy at scale)."""
    import uvicorn

    from engine.gateway import create_app

    settings = get_settings()
    uvicorn.run(create_app(), host=settings.gateway_host, port=settings.gateway_port)


@app.command()
def run(
    process: Annotated[str, typer.Argument(help="Deployment name in prefect.yaml, e.g. compliance-audit.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="key=value for the parameters model.")
    ] = None,
) -> None:
    """Start a process through the Prefect API, as the UI's Run button does."""
    _prepare()
    from engine import runs
    from engine.deployments import specs

    spec = next((s for s in specs() if s.name == process), None)
    if spec is None:
        typer.echo(f"no process {process!r}; known: {', '.join(s.name for s in specs())}", err=True)
        raise typer.Exit(2)
    values = _checked_parameters(spec, param or [])
    flow_name = spec.entrypoint.rsplit(":", 1)[1].replace("_", "-")
    flow_run = runs.start(f"{flow_name}/{spec.name}", values)
    typer.echo(f"started flow run {flow_run.name} ({flow_run.id})")


def _parameters_model(entrypoint: str) -> type[BaseModel] | None:
    """The pydantic model whose fields a flow takes as its parameters (engine.parameters), from its entrypoint."""
    from engine.parameters import ProcessFlow

    module, _, name = entrypoint.partition(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
    return flow.parameters_model if isinstance(flow, ProcessFlow) else None


def _checked_parameters(spec: DeploymentSpec, items: list[str]) -> dict[str, object]:
    """`-p key=value` checked against the flow's parameters model before any run exists: an unknown name, a
    value that does not validate or a name the registry does not hold (a framework, a facility) exits 2 naming
    it. Values go on as the model reads them (`-p limit=5` an int)."""
    from pydantic import ValidationError

    from engine.choices import choices
    from engine.parameters import unknown_value

    given: dict[str, object] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:  # JSON only for what a plain string cannot say: nested models, lists
            given[key.strip()] = json.loads(value) if value.lstrip().startswith(("{", "[")) else value
        except json.JSONDecodeError:
            given[key.strip()] = value
    model = _parameters_model(spec.entrypoint)
    known = sorted(model.model_fields) if model else []
    unknown = [key for key in given if key not in known]
    if unknown:
        takes = f"known: {', '.join(known)}" if known else "it takes no parameters"
        typer.echo(f"unknown parameter {unknown[0]!r} for {spec.name}; {takes}", err=True)
        raise typer.Exit(2)
    if model is None:
        return given
    try:
        checked = model.model_validate({**spec.parameters, **given}).model_dump(mode="json")
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "(all)"
            typer.echo(f"invalid parameter {where!r} for {spec.name}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None
    if (refused := unknown_value(model, checked, choices())) is not None:
        typer.echo(f"invalid parameter for {spec.name}: {refused}", err=True)
        raise typer.Exit(2)
    return {key: checked[key] for key in given}


@app.command()
def demo(
    story: Annotated[str, typer.Argument(help="The story of a process, e.g. audit (the quarterly compliance audit) "
                                              "or drill (a fire drill); `ops demo --help` lists them.")]
    = "audit",
) -> None:
    """Play a process's demo story against the local stack, answering links as a browser would."""
    from engine.processes import discover

    stories = {p.demo: p for p in discover().values() if p.demo}
    if story not in stories:
        known = ", ".join(f"{name} ({p.title})" for name, p in sorted(stories.items()))
        typer.echo(f"no story {story!r}; known: {known}", err=True)
        raise typer.Exit(2)
    _prepare()
    importlib.import_module(f"demo.stories.{story}").main()


@app.command()
def outbox(
    status: Annotated[str | None, typer.Option(help="pending, sent, failed or preview.")] = None,
    deliver: Annotated[bool, typer.Option(help="Deliver what is due first.")] = False,
    requeue: Annotated[bool, typer.Option(help="Send every failed message again (before --deliver).")] = False,
    limit: int = 50,
) -> None:
    """List queued and sent messages: what waits and why (channel secrets masked)."""
    _prepare()
    from sqlmodel import col, func, select

    from engine import notify
    from registry import DeliveryStatus, Notification, Person, session

    if requeue:
        typer.echo(f"requeued {len(notify.requeue_failed())} failed message(s)")
    if deliver:
        report = notify.deliver_due()
        typer.echo(f"delivered {len(report.sent)}, retrying {len(report.retrying)}, failed {len(report.failed)}"
                   + (f"; {len(report.alerted)} reported as not getting through" if report.alerted else ""))
    with session() as db:
        counts = dict(db.exec(select(Notification.status, func.count()).group_by(col(Notification.status))).all())
        typer.echo(f"waiting {counts.get(DeliveryStatus.pending, 0)}, failed {counts.get(DeliveryStatus.failed, 0)}"
                   f", sent {counts.get(DeliveryStatus.sent, 0)}"
                   + ("  (ops outbox --requeue sends the failed ones again)" if counts.get(DeliveryStatus.failed)
                      else ""))
        query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
        if status:
            query = query.where(Notification.status == status)
        for note in db.exec(query):
            person = db.get(Person, note.recipient_id)
            email = person.email if person else "?"
            waits = (f"  next {note.next_attempt_at:%Y-%m-%d %H:%M} UTC"
                     + (f", retried until {note.give_up_at:%Y-%m-%d %H:%M} UTC" if note.give_up_at else "")
                     if note.status == DeliveryStatus.pending and note.attempts else "")
            typer.echo(f"{note.id:>5} {note.status.value:<8} {note.attempts} try  {email:<32} {note.subject}"
                       + waits + (f"  [{note.last_error}]" if note.last_error else ""))


def _import_kinds() -> dict[str, object]:
    """Every CSV kind a process declares (engine.processes), besides those the engine registers itself."""
    from engine.importer import kinds
    from engine.processes import discover

    discover()
    return dict(kinds())


@contextmanager
def _progress_bar(total: int) -> Iterator[object]:
    """A progress bar on large files; small ones import without the noise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if total < 5000:

        class _Quiet:
            def advance(self, rows: int) -> None:
                pass

        yield _Quiet()
        return
    with Progress(TextColumn("checking rows"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("rows", total=total)

        class _Bar:
            def advance(self, rows: int) -> None:
                bar.advance(task, rows)

        yield _Bar()


@app.command("import")
def import_(
    kind: Annotated[str, typer.Argument(help="vendors, deliveries, inventory, kpis or kpi-measurements.")],
    file: Annotated[Path, typer.Argument(help="The CSV file (UTF-8, header row).", exists=False)],
    dry_run: Annotated[bool, typer.Option(help="Check and count, write nothing.")] = False,
) -> None:
    """Import a CSV: every row is checked first; one bad row refuses the whole file, listing every problem."""
    _prepare()
    from engine.importer import ImportRefused, import_csv

    known = _import_kinds()
    if kind not in known:
        typer.echo(f"unknown kind {kind!r}; known: {', '.join(sorted(known))}", err=True)
        raise typer.Exit(2)
    try:
        report = import_csv(kind, file, dry_run=dry_run, progress=_progress_bar)
    except ImportRefused as refused:
        typer.echo(str(refused), err=True)
        raise typer.Exit(1) from None
    except ValueError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    verb = "would import" if dry_run else "imported"
    typer.echo(f"{verb} {file.name} ({kind}): {report.inserted} new, {report.updated} updated, "
               f"{report.unchanged} unchanged")


@app.command("verify-trail")
def verify_trail() -> None:
    """Recompute the trail's keyed chain and check it against its checkpoints; exit 1 on any tampering.

    A trail that verifies is sealed: its head is appended to the checkpoint file, so rows deleted later are found.
    """
    _prepare()
    from registry import session
    from registry.trail import checkpoint, verify

    with session() as db:
        report = verify(db)
        if report.ok:
            checkpoint(db)
    if report.ok:
        against = (f"; {report.checkpoints} checkpoint(s) held, the latest at event {report.latest.event_id} "
                   f"({report.latest.at})" if report.latest else "; no checkpoint before this one")
        typer.echo(f"trail intact: {report.events} events, head {report.head}{against}")
        return
    for problem in report.problems:
        typer.echo(f"TAMPERED: {problem}", err=True)
    raise typer.Exit(1)


@app.command()
def sweep() -> None:
    """Run the deadline sweep once (the engine loop of `ops serve` and every worker does this every minute)."""
    _prepare()
    from engine.sweep import sweep as run_sweep

    typer.echo(str(run_sweep()))


@app.command()
def doctor(
    topology: Annotated[str, typer.Option(help="local (one `ops serve` machine), pool (workers on prefect.yaml's "
                                               "work pool) or auto (as the Prefect API shows it).")] = "auto",
    pool_name: Annotated[str | None, typer.Option("--pool", help="The work pool to check; default prefect.yaml's "
                                                                 "(as `ops worker --pool`).")] = None,
) -> None:
    """Check this configuration before trusting it: databases, Prefect, pool and workers, gateway, mail, secrets.

    Prints OK, WARN or FAIL per check with the fix; exit 1 when anything fails. Nothing is changed or sent."""
    from engine.doctor import TOPOLOGIES, diagnose, failed, render
    from engine.stack import apply_local_environment

    if topology not in TOPOLOGIES:
        typer.echo(f"unknown topology {topology!r}; known: {', '.join(TOPOLOGIES)}", err=True)
        raise typer.Exit(2)
    # Not _prepare(): get_settings() raises on what the doctor is there to report (a default secret in production).
    findings = diagnose(topology=TOPOLOGIES[topology], pool=pool_name, prepare=apply_local_environment)
    typer.echo(render(findings))
    if failed(findings):
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
