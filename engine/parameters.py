"""A process's parameters as the Prefect UI's Run form shows them: one field per parameter, at the top.

A process declares its parameters once, as a pydantic model (titles, descriptions, defaults, validators) and
writes its flow as `def flow(params: XParameters)`. Prefect's UI draws a model parameter as one nested box in
which every field says "(Optional)", and a field that may be None as a type toggle; so the flow Prefect sees
takes the model's fields as its own top-level parameters (`flow(framework=..., period=...)`, as a deployment's
run passes them) and its form is the model's own schema. A field whose values are rows of the registry
(`Annotated[str, OneOf("framework")]`) is offered as a dropdown of them when `ops serve` registers the
deployment; `ops run` refuses a value the registry does not hold before any run exists, and the process itself
when it reads the row, naming the value and the known ones.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import Flow
from prefect.exceptions import ParameterTypeError
from prefect.utilities.callables import ParameterSchema
from pydantic import BaseModel, ConfigDict, ValidationError


@dataclass(frozen=True)
class OneOf:
    """Field metadata: the value names a row of the registry (`source`, a key of engine.choices.SOURCES), offered
    as a dropdown.

    `only`: a value the registry does not hold is refused. Without it the registry's values are what the form
    offers, with the field's default among them (a drill of a kind no programme has is an ad-hoc one).
    """

    source: str
    only: bool = True


def _one_of(model: type[BaseModel]) -> dict[str, OneOf]:
    return {name: meta for name, field in model.model_fields.items()
            for meta in field.metadata if isinstance(meta, OneOf)}


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """The schema with every $ref replaced by its definition, so a nested model can be checked like a field."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline({**definitions[node["$ref"].rsplit("/", 1)[1]],
                            **{k: v for k, v in node.items() if k != "$ref"}}, definitions)
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, definitions) for value in node]
    return node


class FormSchema(ParameterSchema):
    """Prefect's parameter schema, keeping `additionalProperties: false`: the API refuses an unknown parameter."""

    model_config = ConfigDict(extra="allow")


def form_schema(model: type[BaseModel], known: dict[str, list[str]] | None = None) -> FormSchema:
    """The model's fields as the top-level properties of a Run form, in their order, titled and described as the
    model says; a OneOf field an enum of `known[source]` when that is given and not empty.

    Refuses (AssertionError, at import) a field the UI would draw as a type toggle (`X | None`, a Decimal: anyOf):
    a form field has one type and a real default, or an empty one ("" for text) that its description explains.
    """
    schema = model.model_json_schema(ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    one_of = _one_of(model)
    properties: dict[str, Any] = {}
    for position, (name, prop) in enumerate(schema["properties"].items()):
        prop = _inline(prop, definitions)
        assert "anyOf" not in json.dumps(prop), (
            f"{model.__name__}.{name} has several types (anyOf): the Run form shows a type toggle; give it one "
            "type and a default ('' or 0 for 'not given')")
        values = list((known or {}).get(one_of[name].source, ())) if name in one_of else []
        if values and not one_of[name].only and prop.get("default") not in (None, "", *values):
            values.append(prop["default"])
        if values and prop.get("default") == "":  # empty says something ("every risk due"): a choice, first
            values = ["", *values]
        if values:
            prop = {**prop, "enum": values}
            prop.pop("pattern", None)
            if prop.get("default") not in values:  # a framework not set up: the person chooses one
                prop.pop("default", None)
        field = model.model_fields[name]
        if "default" not in prop and field.default_factory is not None:  # a group (score weights): its defaults
            made = field.get_default(call_default_factory=True)
            prop = {**prop, "default": made.model_dump(mode="json") if isinstance(made, BaseModel) else made}
        if prop.get("type") == "number" and isinstance(prop.get("default"), str):  # a Decimal's default
            prop = {**prop, "default": float(prop["default"])}
        properties[name] = {**prop, "position": position}
    closed = {"additionalProperties": False} if schema.get("additionalProperties") is False else {}
    # Every key set explicitly: a deployment sends its schema without unset keys, and a form without "type" is
    # drawn as one JSON box.
    return FormSchema(title="Parameters", type="object", properties=properties,
                      required=list(schema.get("required", [])), definitions={}, **closed)


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The model's defaults as its form gives them (fields without one left out)."""
    return {name: prop["default"] for name, prop in form_schema(model).properties.items() if "default" in prop}


def unknown_value(model: type[BaseModel], values: dict[str, Any], known: dict[str, list[str]]) -> str | None:
    """The first OneOf value the registry does not hold, as "<field> 'x' does not exist (known: a, b)"; None."""
    for name, one_of in _one_of(model).items():
        value, held = values.get(name), known.get(one_of.source)
        if one_of.only and held is not None and value not in (None, "") and value not in held:
            return f"{one_of.source} {value!r} does not exist (known: {', '.join(held) or 'none'})"
    return None


def model_of(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model a process flow's function takes as `params`, if it takes one."""
    hint = typing.get_type_hints(fn).get("params")
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


class ProcessFlow(Flow[..., Any]):
    """A flow whose parameters are the fields of its function's `params` model, each a top-level parameter."""

    def __init__(self, fn: Callable[..., Any], model: type[BaseModel], **options: Any) -> None:
        self.parameters_model = model
        super().__init__(fn=_taking_fields(fn, model), **options)
        self.parameters = form_schema(model)

    def to_deployment(self, *args: Any, **kwargs: Any) -> Any:
        """Prefect's deployment, with this flow's form (Prefect would build one from the function's signature)."""
        deployment: Any = super().to_deployment(*args, **kwargs)
        deployment._parameter_openapi_schema = form_schema(self.parameters_model)
        return deployment

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validated by the model (its validators too), refused before the body runs as Prefect refuses a bad
        parameter. A name the registry does not hold is the process's to refuse (it reads the row anyway), naming
        the value and the known ones."""
        try:
            checked = self.parameters_model.model_validate(parameters)
        except ValidationError as error:
            raise ParameterTypeError.from_validation_error(error) from None
        return {name: getattr(checked, name) for name in self.parameters_model.model_fields}


def _taking_fields(fn: Callable[..., Any], model: type[BaseModel]) -> Callable[..., Any]:
    """`fn(params)` as a function of the model's fields (keyword-only, with the model's defaults)."""

    @functools.wraps(fn)
    def run(**values: Any) -> Any:
        return fn(model.model_validate(values))

    fields = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Any,
                                default=inspect.Parameter.empty if field.is_required()
                                else field.get_default(call_default_factory=True))
              for name, field in model.model_fields.items()]
    run.__signature__ = inspect.Signature(fields, return_annotation=inspect.signature(fn).return_annotation)  # type: ignore[attr-defined]
    run.__annotations__ = {name: Any for name in model.model_fields}
    return run
