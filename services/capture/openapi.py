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
    WebhookAck,
    WithdrawIn,
    Withdrawn,
)
from services.capture.platforms import GoogleLead, LinkedInNotification, MetaWebhook
from services.capture.privacy_api import EraseIn, ErasureAccepted, ErasureLog, ExportOut, SubjectIn
from services.runtime.problems import Problem

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
    EraseIn,
    SubjectIn,
    ErasureAccepted,
    ErasureLog,
    ExportOut,
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
_TOKEN = [
    {
        "name": "token",
        "in": "path",
        "required": True,
        "description": "The signed token nurture's mailer put in the link.",
        "schema": {"type": "string"},
    }
]
_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}


def _tracking_paths() -> dict[str, Any]:
    """The e-mail tracking links (services/capture/tracking.py): public, proved by their signature."""
    pixel = {"content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}}}
    refused = {"description": "Damaged or forged link", **_json(Problem)}
    return {
        "/t/o/{token}": {
            "get": {
                "summary": "Open pixel: a 1x1 GIF, also for a bad token; a valid one records email_open.",
                "parameters": _TOKEN,
                "responses": {"200": {"description": "The pixel", **pixel}},
            }
        },
        "/t/c/{token}": {
            "get": {
                "summary": "Click: records email_click, then redirects to the target signed in the token.",
                "parameters": _TOKEN,
                "responses": {
                    "302": {
                        "description": "To the link's target",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": refused,
                },
            }
        },
        "/t/u/{token}": {
            "get": {
                "summary": "Unsubscribe page with a button (merely following the link changes nothing).",
                "parameters": _TOKEN,
                "responses": {"200": {"description": "The page", **_HTML}, "400": refused},
            },
            "post": {
                "summary": "Unsubscribe (the page's button or RFC 8058 one-click); records unsubscribe.",
                "parameters": _TOKEN,
                "responses": {
                    "200": {"description": "Unsubscribed", **_HTML},
                    "400": refused,
                    "503": {"description": "Not recorded; retry", **_json(Problem)},
                },
            },
        },
    }


def _confirm_paths() -> dict[str, Any]:
    """The double opt-in link: GET shows a button (scanners follow links), its POST confirms."""
    token = {
        "name": "token",
        "in": "query",
        "description": "The signed token of the confirmation mail's link.",
        "schema": {"type": "string"},
    }
    refused = {"description": "Damaged or forged link (410: expired); a page for a browser"}
    page_or_problem = {"content": {**_HTML["content"], **_json(Problem)["content"]}}
    form = {"type": "object", "properties": {"token": {"type": "string"}}}
    return {
        "get": {
            "summary": "The confirmation page with a button; following the link records nothing.",
            "parameters": [{**token, "required": True}],
            "responses": {
                "200": {"description": "The page", **_HTML},
                "400": {**refused, **page_or_problem},
                "410": {**refused, **page_or_problem},
                "429": {"description": "Refused", **_json(Problem)},
            },
        },
        "post": {
            "summary": "Confirm a pending consent (the page's button); records consent_confirmed.",
            "description": "The token in the form body, or else in the query. A browser (Accept: "
            "text/html) gets a page, other clients JSON.",
            "parameters": [{**token, "required": False}],
            "requestBody": {
                "required": False,
                "content": {"application/x-www-form-urlencoded": {"schema": form}},
            },
            "responses": {
                "200": {
                    "description": "Confirmed",
                    "content": {**_json(Confirmed)["content"], **_HTML["content"]},
                },
                "400": {**refused, **page_or_problem},
                "410": {**refused, **page_or_problem},
                **{
                    str(status): {"description": "Refused", **_json(Problem)}
                    for status in (409, 413, 429, 503)
                },
            },
        },
    }


def _privacy_paths() -> dict[str, Any]:
    """Erasure and export (services/capture/privacy_api.py): an admin key in X-API-Key."""
    admin = "Needs an admin key (CAPTURE_ADMIN_KEYS) in X-API-Key; 403 for an ordinary API key."
    return {
        "/v1/privacy/erase": {
            "post": {
                "summary": "Erase a lead everywhere: publishes an erase request on privacy.requests.",
                "description": admin,
                "security": _KEY,
                "requestBody": {"required": True, **_json(EraseIn)},
                "responses": _answers(202, ErasureAccepted, 401, 403, 413, 422, 429, 503),
            }
        },
        "/v1/privacy/erasures/{request_id}": {
            "get": {
                "summary": "Which services have reported an erasure done, with counts per store.",
                "description": admin,
                "security": _KEY,
                "parameters": [
                    {"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _answers(200, ErasureLog, 401, 403, 404, 429, 503),
            }
        },
        "/v1/privacy/export": {
            "post": {
                "summary": "Everything leadpipe holds about a lead, by service; says which did not answer.",
                "description": admin,
                "security": _KEY,
                "requestBody": {"required": True, **_json(SubjectIn)},
                "responses": _answers(200, ExportOut, 401, 403, 413, 422, 429, 503),
            }
        },
    }


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
            "/v1/consent/confirm": _confirm_paths(),
            "/v1/webhooks/google": {
                "post": {
                    "summary": "Google Ads lead form webhook (google_key checked).",
                    "requestBody": {"required": True, **_json(GoogleLead)},
                    "responses": _answers(200, WebhookAck, 400, 403, 409, 413, 422, 503),
                }
            },
            **_tracking_paths(),
            **_privacy_paths(),
        },
    }


async def openapi_view(request: web.Request) -> web.Response:
    return web.json_response(build())
