"""Reading the YAML files in `config/`: one way to fail, naming the file, the key and the problem.

Why: every service loads business configuration at start-up, and an operator who broke a file must
see which file, which key and what is wrong, the same way for all of them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.runtime.errors import describe

M = TypeVar("M", bound=BaseModel)
_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def read_yaml(path: Path, error: type[Exception]) -> Any:
    """The file's data ({} for an empty file); unreadable or malformed raises `error`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # saved by an editor in Latin-1, say
        raise error(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    return {} if data is None else data


def validate(model: type[M], data: Any, source: str, error: type[Exception]) -> M:
    """`data` as `model`; a validation problem raises `error` naming `source` and each key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source}: {describe(exc)}") from None


def load_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """Read and validate a YAML configuration file."""
    return validate(model, read_yaml(path, error), str(path), error)


def iso_duration(duration: timedelta) -> str:
    """A duration as the files write it (P7D, PT5M), for an error that quotes a file's value."""
    return str(_DURATION.dump_python(duration, mode="json"))
