"""/openapi.json, generated from the pydantic models of the requests and answers."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from schemas.interaction import InteractionIn
from services.capture.api_models import (
    Accepted,
    BatchIn,
    BatchOut,
    Confirmed,
    Problem,
    WebhookAck,
    WithdrawIn,
    Withdrawn,
)
from services.capture.platforms import GoogleLead, LinkedInNotification, MetaWebhook

_MODELS: tuple[type[BaseModel], ...] = (
    InteractionIn,
    Accepted,
    Problem,
    BatchIn,
    BatchOut,
    Confirmed,
    WithdrawIn,
    Withdrawn,
    WebhookAck,
    MetaWebhook,
    GoogleLead,
    LinkedInNotification,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _answers(ok: int, model: type[BaseModel], *errors: int) -> dict[str, Any]:
    answers: dict[str, Any] = {str(ok): {"description": "OK", **_json(model)}}
    for status in errors:
        answers[str(status)] = {"description": "Refused", **_json(Problem)}
    return answers


_KEY: list[dict[str, list[str]]] = [{"apiKey": []}]
_COMMON = (400, 401, 403, 413, 422, 429, 503)


def build() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "leadpipe capture", "version": "1"},
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": "Accept one event (202 only after the broker acknowledged it).",
                    "security": _KEY,
                    "requestBody": {"required": True, **_json(InteractionIn)},
                    "responses": _answers(202, Accepted, *_COMMON, 409),
                }
            },
            "/v1/events:batch": {
                "post": {
                    "summary": "Accept up to 500 events; the answer reports each one by index.",
                    "security": _KEY,
                    "requestBody": {"required": True, **_json(BatchIn)},
                    "responses": _answers(200, BatchOut, *_COMMON),
                }
            },
            "/v1/consent/withdraw": {
                "post": {
                    "summary": "Withdraw marketing e-mail consent.",
                    "security": _KEY,
                    "requestBody": {"required": True, **_json(WithdrawIn)},
                    "responses": _answers(202, Withdrawn, *_COMMON),
                }
            },
            "/v1/consent/confirm": {
                "get": {
                    "summary": "Confirm a pending consent with the signed link from the confirmation mail.",
                    "parameters": [
                        {"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": _answers(200, Confirmed, 400, 410, 429, 503),
                }
            },
            "/v1/webhooks/google": {
                "post": {
                    "summary": "Google Ads lead form webhook (google_key checked).",
                    "requestBody": {"required": True, **_json(GoogleLead)},
                    "responses": _answers(200, WebhookAck, 400, 403, 409, 413, 422, 503),
                }
            },
        },
    }


async def openapi_view(request: web.Request) -> web.Response:
    return web.json_response(build())
