"""Every message, page and report is a Jinja template in templates/, found by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, pass_context, select_autoescape
from jinja2.runtime import Context

from engine import formats
from registry.clock import as_utc

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class TemplateProblem(ValueError):
    """A template that cannot be rendered; names the template and, where known, the line."""

    def __init__(self, template: str, error: Exception) -> None:
        line = getattr(error, "lineno", None)
        where = f"{template}, line {line}" if line else template
        super().__init__(f"template {where}: {error}")
        self.template = template


@lru_cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"], default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the code and change with it (a restart): checking each file's modification time
        # on every render was half the cost of rendering a drill alert.
        auto_reload=False,
    )
    env.filters["when"] = _format_when
    env.filters["in_sentence"] = in_sentence
    # One format for money and numbers everywhere, in the organisation's currency and locale.
    env.filters["money"] = formats.money
    env.filters["number"] = formats.number
    env.filters["percent"] = formats.percent
    return env


def in_sentence(title: str) -> str:
    """A title as it reads inside a sentence: "Fire evacuation" → "fire evacuation", but "IT outage" stays."""
    first = title.split(" ", 1)[0]
    return title if len(first) > 1 and first.isupper() else title[:1].lower() + title[1:]


@pass_context
def _format_when(context: Context, moment: Any, fmt: str = "%a %d %b %Y %H:%M %Z") -> str:
    """A moment in the reader's time zone: the recipient's in messages, the person's on pages."""
    if moment is None:
        return "—"
    reader = context.get("recipient") or context.get("person")
    tz = getattr(reader, "timezone", None) or (reader.get("timezone") if isinstance(reader, dict) else None)
    return _when(moment, fmt, tz or "UTC")


@lru_cache(maxsize=4096)
def _when(moment: datetime | str, fmt: str, tz: str) -> str:
    # A drill's 1,000 alerts show the same few moments in the same few zones: parsed and formatted once each.
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return str(as_utc(moment).astimezone(ZoneInfo(tz)).strftime(fmt))


def render_page(name: str, context: dict[str, Any]) -> str:
    try:
        return environment().get_template(name).render(context)
    except TemplateError as error:
        raise TemplateProblem(name, error) from error


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    html: str


def message_path(name: str) -> str:
    """A process's message is named by its path, mirroring flows/ ("compliance/audit/evidence_request"); the
    engine's own messages by a bare name, under messages/ ("step_reminder")."""
    return name if "/" in name else f"messages/{name}"


def render_message(name: str, context: dict[str, Any], link: Callable[[int], str]) -> Message:
    """Render <path>.txt (blocks `subject` and `body`) and <path>.html, the path as message_path gives it.

    `link(step_id)` is the only way a template gets a step's URL, so delivery can mint the token late.
    """
    env = environment()
    full = {**context, "link": link}
    path = message_path(name)
    try:
        text_template = env.get_template(f"{path}.txt")
        ctx = text_template.new_context(full)
        subject = "".join(text_template.blocks["subject"](ctx)).strip()
        text = "".join(text_template.blocks["body"](ctx)).strip() + "\n"
        html = env.get_template(f"{path}.html").render(full)
    except (TemplateError, KeyError) as error:
        raise TemplateProblem(path, error) from error
    return Message(subject=" ".join(subject.split()), text=text, html=html)
