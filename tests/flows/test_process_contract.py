"""The contract every discovered process keeps: what a newcomer can rely on in any folder under flows/."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import typing
from datetime import date, timedelta
from pathlib import Path

import pytest
from prefect import Flow
from pydantic import BaseModel

from engine import periods
from engine.deployments import PROJECT_ROOT, specs
from engine.human_steps import ask
from engine.parameters import ProcessFlow
from engine.processes import FLOWS_DIR, Process, discover
from engine.templates import TEMPLATES_DIR, environment, render_page
from registry import session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway

PROCESSES = sorted(discover().values(), key=lambda p: p.name)
IDS = [p.name for p in PROCESSES]
# Rules may use the registry's enums and value types; never a session, a client or a run.
_PURE_FORBIDDEN = ("prefect", "sqlmodel", "sqlalchemy", "registry.db", "engine.work", "engine.runs", "engine.notify",
                   "httpx", "smtplib")
_SESSION_NAMES = {"session", "get_engine"}


def _flows_of(process: Process) -> list[tuple[str, Flow[..., object]]]:
    found = []
    for name in process.flows:
        module = importlib.import_module(f"{process.package}.{name}")
        flows = [value for value in vars(module).values() if isinstance(value, Flow)
                 and value.fn.__module__ == module.__name__]
        assert len(flows) == 1, f"{module.__name__} must define exactly one flow, found {len(flows)}"
        found.append((name, flows[0]))
    return found


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.db" for alias in node.names if alias.name in _SESSION_NAMES)
    return names


def test_every_process_folder_declares_itself() -> None:
    folders = {p.parent.relative_to(FLOWS_DIR).as_posix() for p in FLOWS_DIR.glob("*/*/__init__.py")}
    assert folders == {p.folder for p in PROCESSES}
    assert not [p.name for p in FLOWS_DIR.glob("*.py") if p.name != "__init__.py"], \
        "flows/ holds process packages only: no module at its top"


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_a_declaration_is_cheap_to_import(process: Process) -> None:
    """The gateway, `ops import` and `ops demo` read every declaration: none may pull in Prefect or a flow."""
    probe = (f"import sys, {process.package}; "
             "print(sorted(m for m in sys.modules if m == 'prefect' or "
             "(m.startswith('flows.') and m.endswith(('.flow', '.tasks')))))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]", f"importing {process.package} loads {loaded}"


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_one_flow_per_module_with_a_docstring_and_every_parameter_titled_and_described(process: Process) -> None:
    for name, flow in _flows_of(process):
        assert flow.name.startswith(process.name), f"{name}: flow {flow.name!r} is not named for {process.name}"
        assert flow.description and len(flow.description) > 40, f"{flow.name}: the docstring is the UI description"
        for key, parameter in flow.parameters.properties.items():
            assert parameter.get("title") and parameter["title"] != key, f"{flow.name}: {key!r} without a title"
            # The Run form: one field per parameter, none a type toggle (anyOf) or a nested box ($ref).
            assert "anyOf" not in parameter and "$ref" not in parameter, f"{flow.name}: {key!r} is not a plain field"
        hints = typing.get_type_hints(flow.fn)
        models = [hint for key, hint in hints.items() if key != "return"
                  and isinstance(hint, type) and issubclass(hint, BaseModel)]
        if isinstance(flow, ProcessFlow):
            models.append(flow.parameters_model)
            assert set(flow.parameters.properties) == set(flow.parameters_model.model_fields)
        for model in models:
            for field_name, field in model.model_fields.items():
                assert field.title and field.description, \
                    f"{flow.name}: parameter {field_name!r} needs a title and a description (they are the Run form)"


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_rules_are_pure(process: Process) -> None:
    rules = FLOWS_DIR / process.folder / "rules.py"
    if not rules.exists():
        pytest.skip(f"{process.name} has no rules of its own")
    impure = sorted(name for name in _imports(rules) if name.startswith(_PURE_FORBIDDEN))
    assert impure == [], f"{rules.relative_to(PROJECT_ROOT)} imports {impure}: rules are plain functions"


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_every_flow_of_the_process_is_deployed_in_prefect_yaml(process: Process) -> None:
    entrypoints = {spec.entrypoint.split(":", 1)[0] for spec in specs()}
    for name, _flow in _flows_of(process):
        path = f"flows/{process.folder}/{name}.py"
        assert path in entrypoints, f"no deployment runs {path}"


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_a_readme_says_who_is_asked_and_what_runs_it(process: Process) -> None:
    readme = FLOWS_DIR / process.folder / "README.md"
    assert readme.exists() and len(readme.read_text().split()) > 30


@pytest.mark.parametrize("process", PROCESSES, ids=IDS)
def test_every_template_it_names_exists_in_its_own_folder_and_compiles(process: Process) -> None:
    package = FLOWS_DIR / process.folder
    named = set()
    for module in package.glob("*.py"):
        named.update(re.findall(r'"(' + re.escape(process.folder) + r'/[a-z_]+)"', module.read_text()))
        stray = re.findall(r'template="([a-z_]+)"', module.read_text())
        assert not stray, f"{module.name} queues {stray}: a process's messages live in templates/{process.folder}/"
    env = environment()
    for name in sorted(named):
        parts = [f"{name}{suffix}" for suffix in (".txt", ".html") if (TEMPLATES_DIR / f"{name}{suffix}").exists()]
        assert parts, f"{name} is named in {process.folder} but templates/{name}.txt|.html does not exist"
        for part in parts:
            env.get_template(part)  # a syntax error fails here, naming the file and line
    for template in (TEMPLATES_DIR / process.folder).glob("*.*") if (TEMPLATES_DIR / process.folder).exists() else ():
        env.get_template(template.relative_to(TEMPLATES_DIR).as_posix())


@pytest.mark.parametrize("process", [p for p in PROCESSES if p.forms], ids=[p.name for p in PROCESSES if p.forms])
def test_every_form_renders_on_the_gateway(process: Process, gateway: Gateway) -> None:
    from engine.forms import form_model, form_names

    names = [n for n in form_names() if form_model(n) in process.forms]
    assert len(names) == len(process.forms), f"{process.name}: a declared form is not registered by name"
    with session() as db:
        person = factories.person(db)
        tokens = {}
        for name in names:
            step = ask(db, key=f"contract-{process.name}-{name}", person_id=person.id or 0, form=name,
                       title=f"The {name} form", subject_type="test", subject_id=1,
                       due_at=utcnow() + timedelta(days=1))
            tokens[name] = factories.link(db, step)
    for name, token in tokens.items():
        page = gateway.client.get(f"{gateway.url}/s/{token}")
        assert page.status_code == 200, f"{name}: {page.status_code}"
        for field_name in form_model(name).model_fields:
            assert f'name="{field_name}' in page.text, f"{name}: field {field_name} is not on the page"


def _code_strings(path: Path) -> set[str]:
    """The string literals a module computes with: docstrings (which may give an example) left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant)}
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings}


def test_adding_a_process_touches_no_engine_file() -> None:
    """The engine names no process: no process's name, package or template folder is a literal in engine/ or
    registry/ (the deadline sweep is the engine's own)."""
    offenders = []
    for path in [*(PROJECT_ROOT / "engine").glob("*.py"), *(PROJECT_ROOT / "registry").glob("*.py")]:
        literals = _code_strings(path)
        for process in PROCESSES:
            if process.name == "deadline-sweep":
                continue
            named = {process.name, process.package, process.folder}
            offenders += [f"{path.relative_to(PROJECT_ROOT)}: {text!r}" for text in sorted(literals)
                          if text in named or text.startswith((f"{process.folder}/", f"{process.package}.",
                                                               f"{process.name}/"))]
    assert offenders == []


SECTIONED = [p for p in PROCESSES if p.sections]


@pytest.mark.parametrize("process", SECTIONED, ids=[p.name for p in SECTIONED])
def test_every_report_section_is_its_own_and_builds_and_renders_on_an_empty_registry(
        process: Process, registry_db: str) -> None:
    """The operations report runs every process's sections: one that breaks on a fresh install breaks it there."""
    period = periods.parse("2026-10", date(2026, 11, 15))
    for section in process.sections:
        assert section.template.startswith(f"{process.folder}/") and (TEMPLATES_DIR / section.template).is_file(), \
            f"{process.name}: section {section.key!r}'s partial is not in templates/{process.folder}/"
        with session() as db:
            data = section.build(db, period)
        if data is not None:
            render_page(section.template, {"section": data, "period": period, "person": {"timezone": "UTC"}})


APPLYING = [p for p in PROCESSES if p.appliers]


@pytest.mark.parametrize("process", APPLYING, ids=[p.name for p in APPLYING])
def test_every_applier_says_what_it_owes_on_both_databases(process: Process, any_db: str) -> None:
    """The sweep asks every applier each minute which answers have not taken effect: on a fresh registry, none."""
    with session() as db:
        for applier in process.appliers:
            assert list(applier.unapplied(db)) == [], f"{process.name}: {applier.subject_type}"
