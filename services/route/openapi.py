"""/openapi.json of route's rep API, generated from the pydantic models the handlers answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.route.api_models import RepList, RepOut, RepStatusIn
from services.runtime.problems import Problem

_MODELS: tuple[type[BaseModel], ...] = (RepStatusIn, RepOut, RepList, Problem)

_REFUSALS = {
    401: "No X-API-Key header, or a key that is not in ROUTE_API_KEYS",
    404: "No rep with this id in the routing rules",
    413: "The body is larger than ROUTE_MAX_BODY_BYTES",
    422: "The body is not a valid status change; `fields` says which field and why",
    503: "ROUTE_API_KEYS is not set, so the rep API is closed",
}
_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]
_REP_ID = [
    {
        "name": "rep_id",
        "in": "path",
        "required": True,
        "description": "A rep's id from the routing rules (config/routing.yaml).",
        "schema": {"type": "string", "minLength": 1},
    }
]


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def _answers(model: type[BaseModel], *refusals: int) -> dict[str, Any]:
    answers: dict[str, Any] = {"200": {"description": "OK", **_json(model)}}
    for status in refusals:
        answers[str(status)] = {"description": _REFUSALS[status], **_json(Problem)}
    return answers


def build(max_body_bytes: int = 4096) -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadpipe route: rep API",
            "version": "1",
            "description": "Rep availability, capacity and out-of-office for sales tools. Every operation "
            "needs a key from ROUTE_API_KEYS in X-API-Key.",
        },
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": _KEY,
        "paths": {
            "/reps": {
                "get": {
                    "summary": "Every configured rep with availability now, capacity and open leads.",
                    "responses": _answers(RepList, 401, 503),
                }
            },
            "/reps/{rep_id}": {
                "get": {
                    "summary": "One rep.",
                    "parameters": _REP_ID,
                    "responses": _answers(RepOut, 401, 404, 503),
                },
                "put": {
                    "summary": "Change a rep's run-time status (omitted fields keep theirs); answers the rep",
                    "parameters": _REP_ID,
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body_bytes} bytes.",
                        **_json(RepStatusIn),
                    },
                    "responses": _answers(RepOut, 401, 404, 413, 422, 503),
                },
            },
        },
    }
