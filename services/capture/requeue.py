"""`leadpipe requeue-fetches`: contact fetches capture gave up on, queued again.

Why: a fetch gives up on an answer that will not change by waiting (a 400 or 404, an unknown shape)
or after its tries (about 45 minutes). Once the cause is mended (a new page token, a form shared with
the app) the leads' answers are still at the platform; this puts their jobs back with a full set of
tries, and a running capture fetches them within a second.
"""

from __future__ import annotations

import asyncio
from typing import cast

from services.capture.fetch_queue import FetchJob, FetchQueue, Platform
from services.capture.settings import CaptureSettings
from services.runtime.redis_client import redis_client


async def requeue(settings: CaptureSettings, platform: Platform | None) -> list[FetchJob]:
    redis = redis_client(settings.redis_url, max(settings.redis_timeout, 5.0))
    try:
        return await FetchQueue(redis, namespace=settings.topic_suffix).requeue(platform)
    finally:
        await redis.aclose()


def main(platform: str | None) -> int:
    """Print what was queued again; 0 even when nothing was waiting (a retry of the command is safe)."""
    jobs = asyncio.run(requeue(CaptureSettings(), cast(Platform | None, platform)))
    for job in jobs:
        print(f"queued again: {job.id} (last error: {job.last_error or 'none'})")
    print(f"{len(jobs)} contact fetch(es) queued again")
    return 0
