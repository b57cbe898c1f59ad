"""Error answers in one shape: {"error": code, "message": text, "fields": [{"field", "reason"}]}."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from services.runtime.errors import FieldProblem


def problem(
    status: int,
    error: str,
    message: str,
    *,
    fields: list[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body: dict[str, object] = {"error": error, "message": message}
    if fields:
        body["fields"] = fields
    return web.json_response(body, status=status, headers=headers)
