"""Every message, page and report is a Jinja template in templates/, found by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

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
    )
    env.filters["when"] = _format_when
    return env


def _format_when(moment: Any, fmt: str = "%a %d %b %Y %H:%M UTC") -> str:
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return str(moment.strftime(fmt))


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


def render_message(name: str, context: dict[str, Any], link: Callable[[int], str]) -> Message:
    """Render messages/<name>.txt (blocks `subject` and `body`) and messages/<name>.html.

    `link(step_id)` is the only way a template gets a step's URL, so delivery can mint the token late.
    """
    env = environment()
    full = {**context, "link": link}
    try:
        text_template = env.get_template(f"messages/{name}.txt")
        ctx = text_template.new_context(full)
        subject = "".join(text_template.blocks["subject"](ctx)).strip()
        text = "".join(text_template.blocks["body"](ctx)).strip() + "\n"
        html = env.get_template(f"messages/{name}.html").render(full)
    except (TemplateError, KeyError) as error:
        raise TemplateProblem(f"messages/{name}", error) from error
    return Message(subject=" ".join(subject.split()), text=text, html=html)
