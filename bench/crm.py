"""A CRM webhook for the bench: takes route's signed hand-off posts after a fixed delay, as a CRM's
API would, and counts them. `service.route-crm` points every team of the shipped routing rules at
it, which the bench's other cases leave without a webhook."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from services.devstack.processes import free_port
from services.route.crm import SIGNATURE_HEADER, verify

SECRET = "bench-crm-secret"


@dataclass
class CrmTally:
    """What the webhook took: every post, the hand-offs among them, and the posts it refused."""

    posts: int = 0
    handoffs: set[str] = field(default_factory=set)
    refused: int = 0


@asynccontextmanager
async def crm_webhook(delay: float) -> AsyncIterator[tuple[str, CrmTally]]:
    """Serve `POST /hooks/handoffs`: 204 after `delay` seconds to a post signed with SECRET, 401 to
    any other; yields the URL and the running tally."""
    tally = CrmTally()

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time()):
            tally.refused += 1
            return web.Response(status=401)
        await asyncio.sleep(delay)
        tally.posts += 1
        tally.handoffs.add(request.headers.get("Idempotency-Key", ""))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/handoffs", receive)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hooks/handoffs", tally
    finally:
        await runner.cleanup()
