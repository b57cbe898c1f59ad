"""Request middlewares: error shape and request metrics, CORS for the snippet, per-client rate limit."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.capture.auth import CLIENT, Handler
from services.capture.keys import CAPTURE_METRICS, RATE_LIMITER, SETTINGS
from services.capture.responses import problem

# Browsers and forms are limited per client address; ad platforms are not limited (they retry).
_LIMIT_BY_ADDRESS = ("/v1/forms/", "/v1/consent/")


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "unmatched"
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        response = problem(413, "body_too_large", f"the request body exceeds {limit} bytes")
    except web.HTTPException as exc:
        response = problem(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
    request.app[CAPTURE_METRICS].requests.labels(route, str(response.status)).inc()
    return response


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    allowed = frozenset(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or origin not in allowed:
            return await handler(request)
        headers = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            headers |= {
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, X-API-Key",
                "Access-Control-Max-Age": "600",
            }
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        response.headers.update(headers)
        return response

    return middleware


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    client: str | None = request.get(CLIENT)
    if client is None and request.path.startswith(_LIMIT_BY_ADDRESS):
        client = f"ip:{request.remote}"
    if client is None or request.method == "OPTIONS":
        return await handler(request)
    decision = await request.app[RATE_LIMITER].hit(client)
    if not decision.checked:
        request.app[CAPTURE_METRICS].rate_limit_unavailable.inc()
    if not decision.allowed:
        request.app[CAPTURE_METRICS].rejected.labels("rate_limited").inc()
        return problem(
            429,
            "rate_limited",
            "too many requests for this key; retry after the given seconds",
            headers={"Retry-After": str(decision.retry_after)},
        )
    return await handler(request)
