"""Error answers in one shape: {"error": code, "message": text, "fields": [{"field", "reason"}]};
and the small HTML pages of the links people follow from their mail (consent, unsubscribe)."""

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


NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


def wants_html(request: web.Request) -> bool:
    """A browser asks for text/html and gets a page; an API client gets the JSON answer."""
    return "text/html" in request.headers.get("Accept", "")


def html_page(title: str, text: str, extra: str = "", *, status: int = 200) -> web.Response:
    """`title` and `text` are ours, never the request's; `extra` is markup whose values are escaped."""
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><h1>{title}</h1><p>{text}</p>{extra}</body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html", headers=NO_CACHE)
