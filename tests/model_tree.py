"""Walks of a model's tree: what a JSON that leaves out None values (`exclude_none`) relies on."""

from __future__ import annotations

import typing
from collections.abc import Iterator

from pydantic import BaseModel
from typing_extensions import is_typeddict  # typing's own misses typing_extensions' before 3.12


def _models_in(annotation: object) -> Iterator[type]:
    """The pydantic models and typed dicts an annotation holds."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel) or is_typeddict(annotation)):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _may_be_none(annotation: object) -> bool:
    return type(None) in typing.get_args(annotation)


def none_values_not_defaulting_to_none(root: type) -> tuple[set[str], list[str]]:
    """Every model and typed dict under `root` (by name), and each field that may be None but
    would not load as None when left out: a None-able field with another default, or a None-able
    key a typed dict requires. A JSON without None values loses nothing only while the list is empty."""
    seen: set[type] = set()
    todo: list[type] = [root]
    wrong = []
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        if is_typeddict(model):
            for name, annotation in typing.get_type_hints(model).items():
                if _may_be_none(annotation) and name in model.__required_keys__:  # type: ignore[attr-defined]
                    wrong.append(f"{model.__name__}.{name}")
                todo.extend(_models_in(annotation))
            continue
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            default = field.get_default(call_default_factory=True)
            if _may_be_none(field.annotation) and default is not None:
                wrong.append(f"{model.__name__}.{name}")
            todo.extend(_models_in(field.annotation))
    return {m.__name__ for m in seen}, wrong
