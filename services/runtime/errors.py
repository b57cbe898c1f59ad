"""Turn pydantic validation errors into "field: reason" pairs people can act on."""

from __future__ import annotations

from typing import TypedDict

from pydantic import ValidationError


class FieldProblem(TypedDict):
    field: str
    reason: str


def field_problems(exc: ValidationError, *, root: str = "(body)", prefix: bool = False) -> list[FieldProblem]:
    """Each problem with its field's path; `root` names the whole value (and, with `prefix`, starts
    every path: the value validated was part of a larger one)."""
    problems: list[FieldProblem] = []
    for error in exc.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"])
        location = f"{root}.{location}" if prefix and location else (location or root)
        problems.append({"field": location, "reason": error["msg"]})
    return problems


def summarise(problems: list[FieldProblem], *, limit: int = 5) -> str:
    text = "; ".join(f"{p['field']}: {p['reason']}" for p in problems[:limit])
    if len(problems) > limit:
        text += f"; and {len(problems) - limit} more"
    return text


def describe(exc: ValidationError) -> str:
    """Every problem of a configuration file as "key: reason; key: reason"."""
    return "; ".join(f"{p['field']}: {p['reason']}" for p in field_problems(exc, root="(top level)"))
