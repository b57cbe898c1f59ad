"""The error body every leadpipe HTTP API answers a refusal with (capture's and route's)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FieldProblemOut(BaseModel):
    field: str
    reason: str


class Problem(BaseModel):
    """Every refusal: a stable code, a sentence for people and, for 422, the failing fields."""

    error: str = Field(examples=["validation_failed", "invalid_body"])
    message: str
    fields: list[FieldProblemOut] | None = None
