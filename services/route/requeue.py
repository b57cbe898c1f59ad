"""`leadpipe requeue-crm`: hand-offs whose CRM webhook delivery was dead-lettered, queued again.

Why: a delivery gives up on an answer that waiting will not change (a 400, a 401 from a rotated
secret, a 404 from a moved endpoint) or after its tries (about 40 minutes). Once the CRM's side is
mended the hand-offs are still wanted there; this puts them back with a full set of tries, and a
running route posts them within a second. It reads REDIS_URL, ROUTE_REDIS_PREFIX and the routing
file as route does, and keeps the deliveries of a team with no webhook there: queued, they would
wait where no loop claims them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from services.route.config import load_config
from services.route.crm import CrmJob
from services.route.crm_queue import CrmQueue
from services.route.settings import RouteSettings
from services.runtime.redis_client import redis_client


@dataclass(frozen=True)
class Requeued:
    moved: list[CrmJob] = field(default_factory=list)
    # Given-up deliveries left where they are, by team: the team has no webhook in the routing file,
    # so no loop would claim them (route would give them up again at its next start).
    kept: dict[str, int] = field(default_factory=dict)


async def requeue(settings: RouteSettings, team: str | None) -> Requeued:
    """Queue again the given-up deliveries of `team` (None: of every team) whose webhook is configured."""
    config = load_config(settings.rules_file)
    with_webhook = {t.name for t in config.teams if t.crm_webhook_url}
    redis = redis_client(settings.redis_url, max(settings.redis_timeout, 5.0))
    try:
        queue = CrmQueue(redis, settings.redis_prefix, done_ttl=settings.crm_done_ttl_seconds)
        failed = [job for job in await queue.failed() if team in (None, job.team)]
        kept = Counter(job.team for job in failed if job.team not in with_webhook)
        wanted = sorted((job for job in failed if job.team in with_webhook), key=lambda job: job.team)
        moved = await queue.requeue_jobs(wanted)
        return Requeued(moved, dict(sorted(kept.items())))
    finally:
        await redis.aclose()


def main(team: str | None) -> int:
    """Print what was queued again and what was kept; 0 unless deliveries were kept for want of a
    webhook (a retry of the command is safe)."""
    settings = RouteSettings()
    result = asyncio.run(requeue(settings, team))
    for job in result.moved:
        last = job.last_error or "none"
        print(f"queued again: hand-off {job.handoff_id} of {job.lead_id} to {job.team} (last error: {last})")
    for name, count in result.kept.items():
        print(
            f"kept: {count} given-up deliver{'y' if count == 1 else 'ies'} of team {name}: it has no "
            f"crm_webhook_url in {settings.rules_file}; add it, then run this again"
        )
    print(f"{len(result.moved)} CRM deliver{'y' if len(result.moved) == 1 else 'ies'} queued again")
    return 1 if result.kept else 0
