"""The parts of our own: the registry database (reachable, migrated to the code's newest), the link gateway, the
mail server."""

from __future__ import annotations

import smtplib
import ssl
from pathlib import Path

import httpx

from engine.doctor.context import TIMEOUT_SECONDS, Doctor
from engine.doctor.findings import Finding, fail, first_line, masked_url, ok, warn

_MIGRATE = "run `ops init --no-demo` (it migrates to the newest schema and seeds nothing; `ops init` adds the demo)"


def registry_url(doctor: Doctor) -> str:
    settings = doctor.settings
    return settings.database_url or f"sqlite:///{(settings.data_dir / 'registry.db').resolve()}"


def check_registry(doctor: Doctor) -> Finding:
    """Reachable, and at the newest migration this code has (Alembic's heads, from registry.migrate's config)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    from registry.migrate import alembic_config

    name, url = "registry database", registry_url(doctor)
    shown = masked_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return fail(name, f"OPS_DATABASE_URL ({shown}) is not a database URL",
                    "set OPS_DATABASE_URL=postgresql+psycopg://user:password@host:5432/database (or sqlite:///path)")
    connect_args: dict[str, object] = {}
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        if not path.is_file():
            return fail(name, f"no registry at {path}", f"{_MIGRATE}, or set OPS_DATABASE_URL to the registry's URL")
        # Read-only: the doctor must not create or change the file it checks.
        url, connect_args = f"sqlite:///file:{path.resolve()}?mode=ro&uri=true", {"timeout": TIMEOUT_SECONDS}
    elif parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": int(TIMEOUT_SECONDS)}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except SQLAlchemyError as error:
        cause = error.orig if getattr(error, "orig", None) is not None else error  # type: ignore[attr-defined]
        return fail(name, f"cannot connect to {shown}: {first_line(cause)}",
                    "start the database server, or set OPS_DATABASE_URL to one that answers (host, port, database, "
                    "user, password)")
    finally:
        engine.dispose()
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = set(script.get_heads())
    newest = ", ".join(sorted(heads))
    if current == heads and parsed.get_backend_name() == "sqlite" and doctor.topology == "pool":
        return warn(name, f"{shown} at migration {newest}, the newest; but a SQLite file is reachable from this "
                          "machine only, and workers run on others",
                    "move the registry to PostgreSQL and set OPS_DATABASE_URL=postgresql+psycopg://… on every "
                    "machine (then `ops init --no-demo` there)")
    if current == heads:
        return ok(name, f"{shown} at migration {newest}, the newest")
    if not current:
        return fail(name, f"{shown} has no schema: it was never migrated (the code's newest migration is {newest})",
                    _MIGRATE)
    unknown = []
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError:
            unknown.append(revision)
    if unknown:
        return fail(name, f"{shown} is at migration {', '.join(sorted(unknown))}, which this code does not have: a "
                          f"newer opsdirector migrated it (this code's newest is {newest})",
                    "install here the opsdirector version that migrated it")
    return fail(name, f"{shown} is at migration {', '.join(sorted(current))}, behind the code's newest, {newest}",
                _MIGRATE)


def check_gateway(doctor: Doctor) -> Finding:
    """The gateway answering its health route at the URL every link is sent with."""
    name, url = "gateway", doctor.settings.gateway_url.rstrip("/")
    fix = ("start the gateway (`ops gateway`, or `ops up`), or set OPS_GATEWAY_URL to the URL it answers at (the "
           "public one people's links use)")
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
            response = client.get(f"{url}/healthz")
    except httpx.HTTPError as error:
        return fail(name, f"nothing answers at {url}: {type(error).__name__}: {first_line(error)}", fix)
    if response.status_code != 200 or response.text.strip() != "ok":
        return fail(name, f"{url}/healthz answered {response.status_code} {response.text[:60]!r}: that is not "
                          "the gateway", fix)
    if doctor.settings.mode == "production" and not url.startswith("https://"):
        return warn(name, f"{url} answers, over plain HTTP: links carry their tokens in the clear",
                    "put the gateway behind a TLS proxy and set OPS_GATEWAY_URL=https://…")
    return ok(name, f"{url} answers as the gateway")


def check_mail(doctor: Doctor) -> Finding:
    """The mail server of OPS_MAIL_URL answering: connect, EHLO (STARTTLS when the URL asks for it), QUIT."""
    import apprise
    from apprise.plugins.email.base import NotifyEmail

    name = "mail server"
    url = doctor.settings.mail_url.get_secret_value()
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return fail(name, f"OPS_MAIL_URL ({url.split('://', 1)[0]}://…) is not a URL Apprise reads",
                    "set OPS_MAIL_URL=mailtos://user:password@smtp.example.com?from=ops%40example.com")
    if not isinstance(plugin, NotifyEmail):
        return warn(name, f"OPS_MAIL_URL is a {plugin.service_name} URL, not e-mail: not checked",
                    "set OPS_MAIL_URL to the mail server (mailto:// or mailtos://)")
    host, port, mode = plugin.smtp_host, int(plugin.port), plugin.secure_mode
    where = f"{host}:{port}"
    try:
        if mode == "ssl":
            server: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=TIMEOUT_SECONDS,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(host, port, timeout=TIMEOUT_SECONDS)
        try:
            server.ehlo()
            if mode == "starttls":
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
        finally:
            server.quit()
    except (OSError, smtplib.SMTPException) as error:
        return fail(name, f"{where} ({mode}) does not answer: {type(error).__name__}: {first_line(error)}",
                    f"start the mail server at {where}, or set OPS_MAIL_URL to one that answers")
    return ok(name, f"{where} answers EHLO ({mode}{', as ' + plugin.user if plugin.user else ''}; nothing sent)")
