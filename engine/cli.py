"""`ops`: the command line of opsdirector."""

from __future__ import annotations

import importlib
import json
import sys
from typing import Annotated

import typer

from engine.settings import get_settings

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
    typer.echo("registry ready" + ("; demo organisation seeded" if created else ""))


@app.command()
def up() -> None:
    """Start the local stack: Prefect server and UI, every deployment, the link gateway and a mail catcher."""
    from engine.stack import apply_local_environment

    apply_local_environment(get_settings(), own_server=True)
    init(demo=True)
    from engine import stack

    stack.run(get_settings())


@app.command()
def serve() -> None:
    """Serve every deployment in prefect.yaml from this process (what `ops up` runs)."""
    _prepare()
    from engine.deployments import serve_all

    serve_all()


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
    values = {}
    for item in param or []:
        key, _, value = item.partition("=")
        try:
            values[key] = json.loads(value)
        except json.JSONDecodeError:
            values[key] = value
    flow_name = spec.entrypoint.rsplit(":", 1)[1].replace("_", "-")
    parameters = {"params": values} if values else {}
    flow_run = runs.start(f"{flow_name}/{spec.name}", parameters)
    typer.echo(f"started flow run {flow_run.name} ({flow_run.id})")


@app.command()
def demo() -> None:
    """Run the compliance audit story against the local stack, answering links as a browser would."""
    _prepare()
    importlib.import_module("flows.demo").main()


@app.command()
def outbox(
    status: Annotated[str | None, typer.Option(help="pending, sent, failed or preview.")] = None,
    deliver: Annotated[bool, typer.Option(help="Deliver what is due first.")] = False,
    limit: int = 50,
) -> None:
    """List queued and sent messages (channel secrets masked)."""
    _prepare()
    from sqlmodel import col, select

    from engine import notify
    from registry import Notification, Person, session

    if deliver:
        report = notify.deliver_due()
        typer.echo(f"delivered {len(report.sent)}, retrying {len(report.retrying)}, failed {len(report.failed)}")
    with session() as db:
        query = select(Notification).order_by(col(Notification.id).desc()).limit(limit)
        if status:
            query = query.where(Notification.status == status)
        for note in db.exec(query):
            person = db.get(Person, note.recipient_id)
            email = person.email if person else "?"
            typer.echo(f"{note.id:>5} {note.status.value:<8} {note.attempts} try  {email:<32} {note.subject}"
                       + (f"  [{note.last_error}]" if note.last_error else ""))


@app.command("verify-trail")
def verify_trail() -> None:
    """Recompute the audit trail's hash chain; exit 1 if any row was edited or deleted."""
    _prepare()
    from registry import session
    from registry.trail import verify

    with session() as db:
        report = verify(db)
    if report.ok:
        typer.echo(f"trail intact: {report.events} events, head {report.head}")
        return
    for problem in report.problems:
        typer.echo(f"TAMPERED: {problem}", err=True)
    raise typer.Exit(1)


@app.command()
def sweep() -> None:
    """Run the deadline sweep once (the deadline-sweep deployment does this every minute)."""
    _prepare()
    from engine.sweep import sweep as run_sweep

    typer.echo(str(run_sweep()))


if __name__ == "__main__":
    sys.exit(app())
