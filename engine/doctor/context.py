"""What every check reads: the settings as loaded (a production refusal kept, not raised), the Prefect settings of
this environment, the Prefect API (read once, with a short timeout), the topology, and the secrets to keep out."""

from __future__ import annotations

import dataclasses
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from engine.deployments import PREFECT_YAML, specs
from engine.doctor.findings import Finding
from engine.settings import Settings

Topology = Literal["auto", "local", "pool"]
TIMEOUT_SECONDS = 3.0


class Unreadable(Exception):
    """The settings cannot be read at all (an unknown locale, a mode that is not one): nothing else is checked."""


def load_settings() -> tuple[Settings, list[str]]:
    """The settings of this environment and, when production mode refuses them, each refusal.

    The refusals are Settings' own (Settings.production_refusals: an embedded secret, a short trail key): the same
    settings are read again in development mode, where only they differ, so the other checks see every other value.
    """
    try:
        return Settings(), []
    except ValidationError as error:
        problems = [problem["msg"].removeprefix("Value error, ") for problem in error.errors()]
        if any(problem["loc"] == ("mode",) for problem in error.errors()):
            raise Unreadable("; ".join(problems)) from None
        try:
            relaxed = Settings(mode="development")
        except ValidationError:
            raise Unreadable("; ".join(problems)) from None
        production = relaxed.model_copy(update={"mode": "production"})
        return production, production.production_refusals() or problems


class ApiUnreachable(Exception):
    """PREFECT_API_URL unset, or nothing answering there within the timeout."""


class Doctor:
    """One examination's view of the configuration. API reads are cached: several checks ask for the pool."""

    def __init__(self, settings: Settings, *, refusals: list[str] | None = None, topology: Topology = "auto",
                 pool: str | None = None, prefect_yaml: Path = PREFECT_YAML) -> None:
        self.settings = settings
        self.refusals = refusals or []
        self.asked_topology = topology
        self.prefect_yaml = prefect_yaml
        self._pool_name = pool

    @cached_property
    def pool_name(self) -> str:
        """The work pool asked for, or the one prefect.yaml's deployments name (as `ops deploy` reads it)."""
        from engine.pool import pool_name

        return self._pool_name or pool_name(self.prefect_yaml)

    @cached_property
    def prefect(self) -> Any:
        """Prefect's settings as this environment (variables, profile) sets them."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Prefect's note that it cannot create PREFECT_HOME: not ours to fix here
            from prefect.settings import get_current_settings

            return get_current_settings()

    @property
    def api_url(self) -> str | None:
        url = self.prefect.api.url
        return str(url).rstrip("/") if url else None

    @cached_property
    def _client(self) -> httpx.Client:
        headers: dict[str, str] = {}
        auth = None
        if self.prefect.api.key:
            headers["Authorization"] = f"Bearer {self.prefect.api.key.get_secret_value()}"
        if self.prefect.api.auth_string and ":" in self.prefect.api.auth_string.get_secret_value():
            auth = httpx.BasicAuth(*self.prefect.api.auth_string.get_secret_value().split(":", 1))
        return httpx.Client(timeout=TIMEOUT_SECONDS, headers=headers, auth=auth)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A request to the Prefect API; ApiUnreachable when it is not set or does not answer."""
        if not self.api_url:
            raise ApiUnreachable("PREFECT_API_URL is not set")
        try:
            return self._client.request(method, f"{self.api_url}{path}", json=body)
        except httpx.HTTPError as error:
            raise ApiUnreachable(f"{type(error).__name__}: {error}") from None

    @cached_property
    def health(self) -> httpx.Response | ApiUnreachable:
        """The API's answer to /health, asked once: an unreachable API costs one timeout, not one per check."""
        try:
            return self.api("GET", "/health")
        except ApiUnreachable as error:
            return error

    @property
    def api_answers(self) -> bool:
        return isinstance(self.health, httpx.Response) and self.health.status_code == 200

    @cached_property
    def server_settings(self) -> dict[str, Any] | None:
        """The Prefect server's own settings (secrets obfuscated by the server), or None when it does not say."""
        if not self.api_answers:
            return None
        try:
            response = self.api("GET", "/admin/settings")
        except ApiUnreachable:
            return None
        return response.json() if response.status_code == 200 else None

    @cached_property
    def pool(self) -> dict[str, Any] | None:
        """The work pool as the API holds it; None when it has none of that name."""
        response = self.api("GET", f"/work_pools/{quote(self.pool_name, safe='')}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    @cached_property
    def deployments(self) -> dict[str, dict[str, Any]]:
        """prefect.yaml's deployments as the API holds them, by name."""
        names = [spec.name for spec in specs(self.prefect_yaml)]
        response = self.api("POST", "/deployments/filter", {"deployments": {"name": {"any_": names}}})
        response.raise_for_status()
        return {d["name"]: d for d in response.json()}

    @cached_property
    def workers(self) -> list[dict[str, Any]]:
        response = self.api("POST", f"/work_pools/{quote(self.pool_name, safe='')}/workers/filter", {})
        response.raise_for_status()
        return list(response.json())

    @cached_property
    def topology(self) -> Literal["local", "pool"] | None:
        """As asked; or, asked "auto", pool when the API holds the work pool or a deployment on one, else local.
        None when auto cannot tell (the API does not answer)."""
        if self.asked_topology != "auto":
            return self.asked_topology
        if not self.api_answers:
            return None
        if self.pool is not None or any(d.get("work_pool_name") for d in self.deployments.values()):
            return "pool"
        return "local"

    @property
    def topology_said(self) -> str:
        return "" if self.asked_topology != "auto" else " (found on the API; `--topology` says otherwise)"

    @cached_property
    def secrets(self) -> list[str]:
        """Every secret this configuration holds, as it could appear in an error message (longest first)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        found = [self.settings.secret_key.get_secret_value(), self.settings.mail_url.get_secret_value()]
        if self.settings.trail_key:
            found.append(self.settings.trail_key.get_secret_value())
        for url in (self.settings.database_url, self.settings.prefect_database_url):
            try:
                found.append(str(make_url(url).password or "") if url else "")
            except ArgumentError:  # no password to find in it: the whole URL is kept out
                found.append(url or "")
        try:
            import apprise

            plugin = apprise.Apprise.instantiate(self.settings.mail_url.get_secret_value(), suppress_exceptions=True)
            found.append(getattr(plugin, "password", None) or "")
        except Exception:  # an unreadable mail URL: the mail check says so
            pass
        for secret in (self.prefect.api.key, self.prefect.api.auth_string):
            if secret:
                found.append(secret.get_secret_value())
        return sorted({s for s in found if len(s) >= 4} | {quote(s, safe="") for s in found if len(s) >= 4},
                      key=len, reverse=True)

    def scrubbed(self, finding: Finding) -> Finding:
        """The finding with every secret of the configuration replaced by ***, wherever a library put it."""
        detail, fix = finding.detail, finding.fix
        for secret in self.secrets:
            detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
        return dataclasses.replace(finding, detail=detail, fix=fix)

    def close(self) -> None:
        if "_client" in self.__dict__:
            self._client.close()

