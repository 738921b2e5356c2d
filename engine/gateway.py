"""The link gateway: a person opens a link (GET, changes nothing) and answers it (POST, recorded once)."""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import tempfile
import threading
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from python_multipart.multipart import parse_options_header
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, MutableHeaders, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import appliers, inbox, links
from engine.forms import AnswerContext, form_model, validate_answer
from engine.human_steps import ATTACHMENT, record_answer
from engine.processes import discover
from engine.settings import get_settings
from engine.templates import render_page
from registry import HumanStep, Person, session
from registry.clock import utcnow

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 1024 * 1024  # one file at the cap, and the form's fields around it
MAX_FIELDS = 50
MAX_FILES = 4

_REFUSAL_TEXT = {
    links.Refusal.unknown: ("This link is not valid",
                            "It may have been mistyped or altered. Use the link exactly as it was sent to you."),
    links.Refusal.not_yours: ("This link is for a different request",
                              "A link answers only the request it was sent for, by the person it was sent to."),
    links.Refusal.own_request: ("You cannot approve your own request",
                                "Someone other than the requester has to decide this one."),
    links.Refusal.inactive: ("This link is no longer yours to use",
                             "Your account is inactive; the request has passed to your delegate."),
    links.Refusal.decided: ("This request has already been answered",
                            "Nothing was changed. The answer on record stands."),
    links.Refusal.expired: ("This link has expired",
                            "The deadline has passed. Ask the requester to send a new request if it still matters."),
    links.Refusal.withdrawn: ("This request was withdrawn",
                              "It no longer describes the situation, so nothing can be answered here. If something "
                              "is still needed of you, a new request has been sent."),
}

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'",
}


def _page(name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    return HTMLResponse(render_page(f"pages/{name}", context), status_code=status, headers=_SECURITY_HEADERS)


def _refused(refusal: links.Refusal) -> HTMLResponse:
    title, detail = _REFUSAL_TEXT[refusal]
    return _page("refused.html", {"title": title, "detail": detail}, status=refusal.status)


def _problem(problem: str, status: int, headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """A fixed page for what went wrong (templates/pages/problem.html); the detail goes to the log only."""
    response = _page("problem.html", {"problem": problem, "max_upload_mb": MAX_UPLOAD_BYTES // (1024 * 1024)},
                     status=status)
    response.headers.update(headers or {})
    return response


class _SecurityHeaders:
    """Adds the security headers to every response that does not set its own: errors, health and inbox too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    if name not in headers:
                        headers.append(name, value)
            await send(message)

        await self.app(scope, receive, _send)


@dataclass
class FieldView:
    name: str
    label: str
    help: str
    widget: str
    required: bool
    choices: list[tuple[str, str]] = field(default_factory=list)
    value: str = ""
    error: str = ""


def _widget(extra: dict[str, Any], annotation: Any) -> str:
    if "widget" in extra:
        return str(extra["widget"])
    text = str(annotation)
    if "Url" in text:
        return "url"
    if annotation is bool:
        return "checkbox"
    if annotation is int:
        return "number"
    if date in (annotation, *typing.get_args(annotation)):
        return "date"  # a day (optional or not): the browser's date picker, not free text
    return "text"


def _fields(model: type[BaseModel], values: dict[str, str], errors: dict[str, str],
            on_behalf_of: str | None = None) -> list[FieldView]:
    """The form's fields; answered for someone else, in the words the field declares for that (`on_behalf`:
    title, description and labels with "{person}" for the name), so "Are you safe?" reads "Is Ann Smith safe?"."""
    views = []
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        words = typing.cast(dict[str, Any], extra.get("on_behalf", {})) if on_behalf_of else {}
        labels = {**typing.cast(dict[str, str], extra.get("labels", {})), **words.get("labels", {})}
        choices = [(str(c), _naming(labels.get(str(c), str(c)), on_behalf_of))
                   for c in typing.get_args(info.annotation) if isinstance(c, str)]
        label = words.get("title") or info.title or name.replace("_", " ").capitalize()
        views.append(FieldView(
            name=name, label=_naming(label, on_behalf_of),
            help=_naming(words.get("description") or info.description or "", on_behalf_of),
            widget=_widget(extra, info.annotation), required=info.is_required(), choices=choices,
            value=values.get(name, ""), error=errors.get(name, ""),
        ))
    return views


def _naming(text: str, person: str | None) -> str:
    return text.replace("{person}", person) if person else text


def _as_read(model: type[BaseModel], answer: dict[str, Any], on_behalf_of: str | None) -> list[tuple[str, Any]]:
    """The answer as the form asked it: each field's label and the choice's words ("Is Ann Smith safe?": "Ann
    Smith is accounted for"), not its stored names; an empty field left out."""
    read = []
    for view in _fields(model, {}, {}, on_behalf_of):
        value = answer.get(view.name)
        if value in (None, ""):
            continue
        read.append((view.label, dict(view.choices).get(value, value) if isinstance(value, str) else value))
    return read


@dataclass
class _Upload:
    filename: str
    content: bytes

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def path(self) -> Path:
        """Where the file is kept, named by its content: known before it is written."""
        return get_settings().evidence_dir / self.sha256[:2] / self.sha256

    def store(self) -> bool:
        """Write the file durably at `path`; False if the same content is kept there already."""
        path = self.path
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: two answers carrying the same file never write into one another's copy.
        handle, part = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(self.content)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, path)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
        return True


class _NotStored(Exception):
    """An answer's file could not be written: the answer is rolled back with it."""


class _TooLarge(MultiPartException):
    """The body passed MAX_BODY_BYTES; a MultiPartException, so the parser closes the files it opened."""

    def __init__(self) -> None:
        super().__init__("body too large")


def _asked(db: Session, step: HumanStep, person: Person) -> tuple[Person, str | None]:
    """Whom the step asks: the person at the link, or the one they answer for (a warden for a missing person,
    a manager for an overdue report, a delegate); and that one's name when it is not the person at the link."""
    if step.person_id == person.id:
        return person, None
    asked = db.get(Person, step.person_id)
    assert asked is not None
    return asked, asked.name


def _show(db: Session, step: HumanStep, person: Person, token: str, values: dict[str, str],
          errors: dict[str, str], status: int = 200) -> HTMLResponse:
    model = form_model(step.form)
    shown = {k: v for k, v in step.details.items() if not k.startswith("_")}
    asked, on_behalf_of = _asked(db, step, person)
    return _page("step.html", {
        "step": step, "person": person, "asked": asked, "details": shown, "csrf": links.csrf_for(token),
        "attachment": f"/s/{token}/attachment" if step.details.get(ATTACHMENT) else None,
        "fields": _fields(model, values, errors, on_behalf_of), "form_error": errors.get("__all__", ""),
        "multipart": any(f.widget == "file" for f in _fields(model, {}, {})),
    }, status=status)


def _view(token: str) -> HTMLResponse:
    with session() as db:
        check = links.check(db, token)
        if not check.usable:
            assert check.refusal is not None
            return _refused(check.refusal)
        assert check.step is not None and check.person is not None
        return _show(db, check.step, check.person, token, {}, {})


def _attachment(token: str) -> Response:
    with session() as db:
        check = links.check(db, token)
        if not check.usable:
            assert check.refusal is not None
            return _refused(check.refusal)
        assert check.step is not None
        stored = check.step.details.get(ATTACHMENT)
    root = get_settings().data_dir.resolve()
    path = Path(str(stored or "")).resolve()
    if not stored or not path.is_relative_to(root) or not path.is_file():
        return _page("refused.html", {"title": "Nothing is attached to this request", "detail": ""}, status=404)
    # Shown as a static document: no script of its own may run.
    headers = {**_SECURITY_HEADERS,
               "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"}
    return HTMLResponse(path.read_text(encoding="utf-8"), headers=headers)


async def show_attachment(request: Request) -> Response:
    return await run_in_threadpool(_attachment, request.path_params["token"])


async def show_step(request: Request) -> Response:
    return await run_in_threadpool(_view, request.path_params["token"])


def _refusal_of(token: str) -> links.Refusal | None:
    with session() as db:
        return links.check(db, token).refusal


async def _counted(stream: AsyncIterator[bytes], cap: int) -> AsyncGenerator[bytes, None]:
    """The body as it arrives, refused once it passes `cap` (a chunked upload says no length up front)."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > cap:
            raise _TooLarge
        yield chunk


async def _read_form(request: Request) -> FormData:
    content_type, _ = parse_options_header(request.headers.get("content-type"))
    async with aclosing(_counted(request.stream(), MAX_BODY_BYTES)) as body:
        if content_type == b"multipart/form-data":
            return await MultiPartParser(request.headers, body, max_files=MAX_FILES, max_fields=MAX_FIELDS,
                                         max_part_size=MAX_UPLOAD_BYTES).parse()
        if content_type == b"application/x-www-form-urlencoded":
            return await FormParser(request.headers, body, max_fields=MAX_FIELDS,
                                    max_part_size=MAX_UPLOAD_BYTES).parse()
    return FormData()


def _declared_too_large(request: Request) -> bool:
    declared = request.headers.get("content-length", "")
    return declared.isdigit() and int(declared) > MAX_BODY_BYTES


async def answer_step(request: Request) -> Response:
    token = request.path_params["token"]
    # Nothing of the body is read until the link is known to be usable: a forged link costs the server nothing.
    if _declared_too_large(request):
        return _problem("too_large", 413)
    refusal = await run_in_threadpool(_refusal_of, token)
    if refusal is not None:
        return _refused(refusal)
    try:
        form = await _read_form(request)
    except _TooLarge:
        return _problem("too_large", 413)
    except Exception as error:  # whatever the parser says, the page says only that the form was unreadable
        log.warning("a form posted to a step link could not be read: %r", error)
        return _problem("unreadable", 400)
    try:
        uploads: dict[str, _Upload] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) and value.filename:
                content = await value.read(MAX_UPLOAD_BYTES + 1)
                if len(content) > MAX_UPLOAD_BYTES:
                    return _problem("too_large", 413)
                uploads[key] = _Upload(filename=Path(value.filename).name, content=content)
    finally:
        await form.close()
    meta = (request.client.host if request.client else None, request.headers.get("user-agent"))
    return await run_in_threadpool(_record, token, form, uploads, meta)


def _form_values(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if isinstance(v, str) and k not in ("csrf", "step_id")}


def _validate(model: type[BaseModel], values: dict[str, str], uploads: dict[str, _Upload],
              context: AnswerContext) -> Any:
    """The answer as its form, validated in its answering context (engine.forms.answering: the step, its details,
    the session, now): checks that need the registry or today (a score on the risk's matrix, a date in the
    future) run here, as the person submits, and not when engine.answers.answer_of reads a stored answer back."""
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("widget") == "file":
            upload = uploads.get(name)
            if upload is not None:
                data[name] = {"filename": upload.filename, "sha256": upload.sha256, "size": len(upload.content),
                              "stored_path": str(upload.path)}
        elif values.get(name, "") != "" or info.annotation is str:
            data[name] = values.get(name, "")
    return validate_answer(model, data, context)


def _errors(error: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in error.errors():
        where = str(item["loc"][0]) if item["loc"] else "__all__"
        found.setdefault(where, item["msg"].removeprefix("Value error, "))
    return found


RESUME_TRIES = (0.0, 0.5, 1.0, 2.0, 4.0)  # seconds before each try to resume the waiting run


def _record(token: str, form: FormData, uploads: dict[str, _Upload], meta: tuple[str | None, str | None]) -> Response:
    try:
        step_id = int(str(form.get("step_id", "")))
    except ValueError:
        step_id = -1
    written: list[Path] = []
    try:
        return _record_answer(token, step_id, form, uploads, meta, written)
    except BaseException as error:
        # The answer was rolled back: a file written for it alone would be evidence of nothing.
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(error, _NotStored):
            log.error("an answer's file could not be stored, the answer was not recorded: %r", error.__cause__)
            return _problem("not_stored", 500)
        raise


def _record_answer(token: str, step_id: int, form: FormData, uploads: dict[str, _Upload],
                   meta: tuple[str | None, str | None], written: list[Path]) -> Response:
    with session() as db:
        check = links.check(db, token, for_step_id=step_id)
        if check.refusal is links.Refusal.unknown:
            return _refused(check.refusal)
        if not links.csrf_ok(token, str(form.get("csrf", ""))):
            return _page("refused.html", {"title": "This form cannot be accepted",
                                          "detail": "Open the link again and submit the form from that page."},
                         status=403)
        if not check.usable:
            assert check.refusal is not None
            return _refused(check.refusal)
        step, person = check.step, check.person
        assert step is not None and person is not None
        model = form_model(step.form)
        values = _form_values(form)
        try:
            parsed = _validate(model, values, uploads, AnswerContext(step=step, db=db, now=utcnow()))
        except ValidationError as error:
            return _show(db, step, person, token, values, _errors(error), status=422)
        answer = parsed.model_dump(mode="json")
        if not record_answer(db, step=step, person=person, answer=answer, ip=meta[0], user_agent=meta[1]):
            db.rollback()
            return _refused(links.Refusal.decided)
        # Written only once this answer has won, before it commits: a losing answer leaves no file behind, and
        # a file that cannot be written takes its answer back with it.
        for name, upload in uploads.items():
            if isinstance(answer.get(name), dict):
                try:
                    if upload.store():
                        written.append(upload.path)
                except OSError as error:
                    raise _NotStored from error
        title, subject_type = step.title, step.subject_type
        _, on_behalf_of = _asked(db, step, person)
        recorded = _as_read(model, answer, on_behalf_of)
    _apply(step_id, subject_type)
    response = _page("answered.html", {"title": title, "answer": recorded, "on_behalf_of": on_behalf_of})
    # The answer is recorded: the person is not kept waiting on the Prefect API, which may be slow or down.
    # Right after the page is sent, then a few more tries (a run can still be suspending), then the sweep.
    response.background = BackgroundTask(_hand_back_soon, step_id)
    return response


def _hand_back_soon(step_id: int) -> None:
    # The Prefect client costs a second of imports: the gateway is ready without it, and loads it in the
    # background as it starts (load_prefect_client), so the first resume does not wait for it either.
    from engine import runs

    runs.hand_back_soon(step_id, RESUME_TRIES)


def load_prefect_client() -> threading.Thread:
    """Import the Prefect client in a background thread (a second of CPU), so the first resume does not wait.
    Returned, for a process that may exit soon to join: an interpreter ending while a thread still imports can
    abort (SIGABRT) instead of exiting with its code."""
    loading = threading.Thread(target=importlib.import_module, args=("engine.runs",), name="load-prefect-client",
                               daemon=True)
    loading.start()
    return loading


def _apply(step_id: int, subject_type: str) -> None:
    """The answer takes effect right away, by its subject's applier (a corrective action moves on, a risk is
    re-scored...); the answer is committed already, so a failure here loses nothing: the sweep's catch-up applies
    it later."""
    try:
        if appliers.applies_to(subject_type):
            appliers.apply_answered(step_id)
    except Exception as error:
        log.error("step %s: answer recorded, not yet applied (the sweep will): %r", step_id, error)


async def healthz(_request: Request) -> Response:
    return PlainTextResponse("ok")


_HTTP_PROBLEMS = {404: "not_found", 405: "method"}


async def _http_problem(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return _problem(_HTTP_PROBLEMS.get(error.status_code, "unreadable"), error.status_code, error.headers)


async def _server_problem(_request: Request, _error: Exception) -> Response:
    # Starlette logs the exception with its traceback after this page is sent; the page shows none of it.
    return _problem("server_error", 500)


def create_app(*, load_prefect_client_at_start: bool = True) -> Starlette:
    """The gateway's app. It loads the Prefect client as it starts unless told not to: `ops up` loads it once the
    Prefect server is up (load_prefect_client), so that a second of imports does not compete with the server's
    start."""
    # Each process registers its forms with its declaration: find them all, or their links could not be shown;
    # and two processes applying one subject's answers stop the gateway here, not each answer later.
    discover()
    appliers.appliers()
    routes = [
        Route("/s/{token}", show_step, methods=["GET", "HEAD"]),
        Route("/s/{token}", answer_step, methods=["POST"]),
        Route("/s/{token}/attachment", show_attachment, methods=["GET", "HEAD"]),
        Route("/healthz", healthz),
    ]
    if get_settings().catches_mail:
        routes += inbox.routes(_page)
    return Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)],
                     lifespan=_lifespan if load_prefect_client_at_start else None,
                     exception_handlers={HTTPException: _http_problem, Exception: _server_problem})


@asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    load_prefect_client()
    yield
