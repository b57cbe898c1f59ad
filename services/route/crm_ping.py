"""`leadpipe crm-ping --team T`: an example hand-off, signed and posted as route posts real ones.

Why: a receiver's URL or secret that is wrong shows only when the first real lead is dead-lettered.
This checks it first, with route's own settings and routing file (ROUTE_RULES_FILE,
ROUTE_CRM_WEBHOOK_SECRET, the team's crm_webhook_secret_env). The example carries `Leadpipe-Test:
true` and an id of its own, so a receiver can keep it out of its pipeline.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timedelta

import aiohttp

from schemas.base import utcnow
from schemas.handoff import Handoff
from services.route.config import load_config
from services.route.crm import Verdict, team_secrets
from services.route.crm_delivery import Answer, post_handoff
from services.route.settings import RouteSettings
from services.runtime.codec import encode


def example_handoff(team: str, now: datetime) -> Handoff:
    """A hand-off of a made-up lead to `team`'s queue, due in five minutes."""
    handoff_id = f"test-{uuid.uuid4().hex}"
    return Handoff.model_validate(
        {
            "event_id": handoff_id,
            "occurred_at": now,
            "lead_id": "e-000000000000000000000000",
            "handoff_id": handoff_id,
            "assignee": {"team": team, "rep_id": None},
            "stage": "mql",
            "temperature": "hot",
            "scores": {"fit": 40, "engagement": 60, "total": 100},
            "reasons": [{"rule": "demo_request", "points": 50}],
            "contact": {
                "email": "test.lead@example.com",
                "first_name": "Test",
                "last_name": "Lead",
                "company": "Example Corp",
                "job_title": "VP Sales",
            },
            "source": {"channel": "web"},
            "trigger": {"event_id": f"trigger-{handoff_id}", "type": "demo_request", "occurred_at": now},
            "handed_off_at": now,
            "sla": {"tier": "hot", "due_at": now + timedelta(minutes=5)},
        }
    )


async def ping(settings: RouteSettings, team: str) -> tuple[str, Answer]:
    """The team's webhook URL and what it answered; ValueError when there is nothing to post to."""
    config = load_config(settings.rules_file)
    names = [t.name for t in config.teams]
    if team not in names:
        raise ValueError(f"no team {team!r} in {settings.rules_file} (teams: {', '.join(names)})")
    url = config.team(team).crm_webhook_url
    if url is None:
        raise ValueError(f"team {team!r} has no crm_webhook_url in {settings.rules_file}")
    secrets = team_secrets(config, settings.crm_secrets, os.environ)[team]
    handoff = example_handoff(team, utcnow())
    timeout = aiohttp.ClientTimeout(total=settings.crm_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        answer = await post_handoff(
            http,
            url,
            encode(handoff),
            secrets=secrets,
            delivery_id=handoff.handoff_id,
            attempt=1,
            extra={"Leadpipe-Test": "true"},
        )
    return url, answer


def main(team: str) -> int:
    """0 when the receiver took the example (a 2xx), 1 when it did not, 2 when nothing was posted."""
    try:
        url, answer = asyncio.run(ping(RouteSettings(), team))
    except ValueError as exc:
        print(f"not posted: {exc}")
        return 2
    if answer.verdict is Verdict.DELIVERED:
        print(f"POST {url}: taken (2xx); the receiver accepts route's signature")
        return 0
    then = "route would try again" if answer.verdict is Verdict.RETRY else "route would dead-letter it"
    print(f"POST {url}: {answer.error} ({then})")
    return 1
