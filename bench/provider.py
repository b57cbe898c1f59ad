"""A remote firmographics provider for the bench: the shipped company file behind HTTP, answering
after a fixed delay, as a paid API would. Enrich runs against it with `ENRICH_PROVIDER=http` (and
the Redis cache in front of it), which the default local provider does not exercise."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from services.devstack.processes import free_port
from services.enrich.firmographics import DEFAULT_COMPANIES, LocalProvider, LookupStatus, load_companies

Handler = Callable[[web.Request], Awaitable[web.Response]]


@asynccontextmanager
async def serving(handle: Handler) -> AsyncIterator[int]:
    """An HTTP firmographics provider answering `/companies/{domain}` with `handle`; yields its port
    (the integration tests serve their own answers with it too)."""
    app = web.Application()
    app.router.add_get("/companies/{domain}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


@asynccontextmanager
async def remote_provider(delay: float) -> AsyncIterator[str]:
    """Serve the company file (200 with the company, 404 unknown) after `delay` seconds; yields the
    URL template enrich's `ENRICH_PROVIDER_URL` takes."""
    companies = LocalProvider(load_companies(DEFAULT_COMPANIES))

    async def company(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        found = companies.find(request.match_info["domain"])
        if found.status is not LookupStatus.FOUND or found.firmographics is None:
            return web.Response(status=404)
        return web.Response(body=found.firmographics.model_dump_json(), content_type="application/json")

    async with serving(company) as port:
        yield f"http://127.0.0.1:{port}/companies/{{domain}}"
