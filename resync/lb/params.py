"""API parameters as data: one structure gives both the journaled text and the call's arguments.

A parameter is a plain value, a `Ref` (a value captured earlier: the instance id read from IMDS,
the hosted zone's id), `Joined` (text with captured values inside, such as a record name made
from `{instance_id}`) or `JsonRef` (a captured JSON document sent as a structure, such as a
Route53 change batch computed from the record as it was read). `call_template` renders it the
way the plan and the journal show it, e.g.
`elbv2 deregister_targets TargetGroupArn=arn:... Targets=[{Id: i-0abc, Port: 80}]`;
`resolve_params` gives what boto3 is called with. Both read the same structure, so the text
cannot drift from the call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from resync.actions.types import Captured, Fmt, Ref, Slot, Template, Value, _merge
from resync.model.errors import ResyncError
from resync.model.keys import Key

Text = str | Ref  # a word that may be known only at run time


@dataclass(frozen=True)
class Joined:
    """Text made of literal pieces and captured values: `{instance_id}.web.example.internal.`."""

    parts: tuple[Text, ...]


@dataclass(frozen=True)
class JsonRef:
    """A captured JSON document, sent as the structure it encodes."""

    ref: Ref


Param = Value | bool | Text | Joined | JsonRef | Sequence["Param"] | Mapping[str, "Param"]
Params = tuple[tuple[str, Param], ...]


def captured_text(value: Text, captured: Captured) -> str:
    """The value of a word; a Ref not captured (yet) is an error naming it."""
    if isinstance(value, str):
        return value
    name = str(value.key)
    if captured.get(name) in (None, ""):
        raise ResyncError(f"value '{name}' has not been captured (the action that reads it has "
                          "not run, or found nothing)")
    return str(captured[name])


def joined(text: str, **values: Text | None) -> str | Joined:
    """`{name}` placeholders of `text` replaced by values (literal or captured)."""
    parts: list[Text] = []
    rest = text
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, close, rest = after.partition("}")
        value = values.get(name)
        if not close or value is None:
            raise ResyncError(f"{text!r}: nothing to put in {{{name}}}")
        parts += [before, value]
    parts.append(rest)
    kept = tuple(p for p in parts if p != "")
    if all(isinstance(p, str) for p in kept):
        return "".join(str(p) for p in kept)
    return Joined(kept)


def _parts(value: Param) -> list[str | Slot]:
    if isinstance(value, Ref):
        return [Slot(value.key, Fmt.TEXT)]
    if isinstance(value, JsonRef):
        return [Slot(value.ref.key, Fmt.TEXT)]
    if isinstance(value, Joined):
        return [Slot(p.key, Fmt.TEXT) if isinstance(p, Ref) else p for p in value.parts]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str | int | float) or value is None:
        return [str(value)]
    if isinstance(value, Mapping):
        out: list[str | Slot] = ["{"]
        for i, (k, v) in enumerate(value.items()):
            out += [", " if i else "", f"{k}: ", *_parts(v)]
        return [*out, "}"]
    out = ["["]
    for i, v in enumerate(value):
        out += [", " if i else "", *_parts(v)]
    return [*out, "]"]


def call_template(service: str, operation: str, params: Params) -> Template:
    """`service operation Key=value ...` with captured values as slots."""
    out: list[str | Slot] = [f"{service} {operation}"]
    for name, value in params:
        out += [f" {name}=", *_parts(value)]
    return _merge(out)


def text_parts(value: Param) -> Template:
    """A parameter as the plan shows it (a Ref as its <slot>)."""
    return _merge(_parts(value))


def resolve(value: Param, captured: Captured) -> Any:
    if isinstance(value, Ref):
        captured_text(value, captured)  # set, or an error naming it
        return captured[str(value.key)]  # as captured: a port stays a number
    if isinstance(value, Joined):
        return "".join(captured_text(p, captured) for p in value.parts)
    if isinstance(value, JsonRef):
        return json.loads(captured_text(value.ref, captured))
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {k: resolve(v, captured) for k, v in value.items()}
    return [resolve(v, captured) for v in value]


def resolve_params(params: Params, captured: Captured) -> dict[str, Any]:
    return {name: resolve(value, captured) for name, value in params}


def key(prefix: str, name: str) -> Key:
    return Key(f"{prefix}.{name}")
