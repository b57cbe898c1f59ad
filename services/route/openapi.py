"""/openapi.json of route's rep API, generated from the pydantic models the handlers answer with."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.handoff import Handoff
from services.route.api_models import RepList, RepOut, RepStatusIn
from services.route.crm import RETRYABLE_CLIENT_ERRORS, SIGNATURE_HEADER
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


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_RETRIED = ", ".join(str(status) for status in sorted(RETRYABLE_CLIENT_ERRORS))
_HANDOFF_WEBHOOK = {
    "post": {
        "summary": "A hand-off of the team, POSTed to its crm_webhook_url (config/routing.yaml)",
        "description": "The body is the record route published on leads.handoffs, byte for byte. "
        "Deliveries are not ordered: order a lead's hand-offs by `handed_off_at`. A post whose answer "
        "was lost is sent again with the same Idempotency-Key. `leadpipe crm-ping` posts a made-up "
        "example the same way, with the header `Leadpipe-Test: true`.",
        "parameters": [
            _header(
                SIGNATURE_HEADER,
                "`t=<unix seconds>,v1=<hex>`: HMAC-SHA256 of `<t>.<body>` under ROUTE_CRM_WEBHOOK_SECRET, "
                "one `v1` per secret while a secret is rotated. Refuse a `t` more than 5 minutes away.",
            ),
            _header("Idempotency-Key", "The hand-off id: a repeat of a delivered hand-off can be dropped."),
            _header("Leadpipe-Delivery", "The hand-off id, as Idempotency-Key."),
            _header("Leadpipe-Attempt", "1 for the first post, counting up on each retry."),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Handoff"}}},
        },
        "responses": {
            "2XX": {"description": "Delivered."},
            "default": {
                "description": f"5xx, {_RETRIED} or no answer: tried again after a back-off (Retry-After is "
                "honoured), dead-lettered after ROUTE_CRM_ATTEMPTS tries. Any other answer, a redirect "
                "included, is dead-lettered at once; `leadpipe requeue-crm` posts it again."
            },
        },
    }
}


def build(max_body_bytes: int = 4096) -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(model, "validation") for model in _MODELS] + [(Handoff, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadpipe route: rep API",
            "version": "1",
            "description": "Rep availability, capacity and out-of-office for sales tools. Every operation "
            "needs a key from ROUTE_API_KEYS in X-API-Key. `webhooks` describes the hand-offs route posts "
            "to a team's CRM.",
        },
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": _KEY,
        "webhooks": {"handoff": _HANDOFF_WEBHOOK},
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
