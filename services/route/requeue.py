"""`leadpipe requeue-crm`: hand-offs whose CRM webhook delivery was dead-lettered, queued again.

Why: a delivery gives up on an answer that waiting will not change (a 400, a 401 from a rotated
secret, a 404 from a moved endpoint) or after its tries (about 40 minutes). Once the CRM's side is
mended the hand-offs are still wanted there; this puts them back with a full set of tries, and a
running route posts them within a second. It reads REDIS_URL and ROUTE_REDIS_PREFIX as route
does.
"""

from __future__ import annotations

import asyncio

from services.route.crm import CrmJob
from services.route.crm_queue import CrmQueue
from services.route.settings import RouteSettings
from services.runtime.redis_client import redis_client


async def requeue(settings: RouteSettings, team: str | None) -> list[CrmJob]:
    redis = redis_client(settings.redis_url, max(settings.redis_timeout, 5.0))
    try:
        queue = CrmQueue(redis, settings.redis_prefix, done_ttl=settings.crm_done_ttl_seconds)
        return await queue.requeue(team)
    finally:
        await redis.aclose()


def main(team: str | None) -> int:
    """Print what was queued again; 0 even when nothing was waiting (a retry of the command is safe)."""
    jobs = asyncio.run(requeue(RouteSettings(), team))
    for job in jobs:
        last = job.last_error or "none"
        print(f"queued again: hand-off {job.handoff_id} of {job.lead_id} to {job.team} (last error: {last})")
    print(f"{len(jobs)} CRM deliver{'y' if len(jobs) == 1 else 'ies'} queued again")
    return 0
