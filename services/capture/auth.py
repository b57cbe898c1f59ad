"""API-key check: keys are compared as SHA-256 hashes, in constant time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from services.capture.responses import problem
from services.runtime.api_keys import hash_api_key, key_is_valid

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT = web.RequestKey("client", str)


def client_of(api_key: str) -> str:
    """The API client a key stands for, as rate limits and idempotency keys name it: part of the
    key's hash, never the key."""
    return hash_api_key(api_key)[7:23]


def api_key_middleware(
    known_hashes: frozenset[str],
    protected_prefix: str = "/v1/",
    public_prefixes: tuple[str, ...] = (),
) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(protected_prefix) or request.path.startswith(public_prefixes):
            return await handler(request)
        if request.method == "OPTIONS":  # CORS preflight carries no key
            return await handler(request)
        presented = request.headers.get("X-API-Key")
        if not presented:
            return problem(401, "missing_api_key", "send your API key in the X-API-Key header")
        if not key_is_valid(presented, known_hashes):
            return problem(403, "invalid_api_key", "the API key is not valid")
        request[CLIENT] = client_of(presented)
        return await handler(request)

    return middleware
