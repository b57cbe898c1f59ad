"""Hand-offs to CRM webhooks: `leads.handoffs` -> a queue in Redis -> a signed POST per hand-off.

A plain consumer of leads.handoffs in its own group (services/runtime/side_consumer.py) queues the
hand-off of every team with a `crm_webhook_url` (crm_queue.py); a loop beside it claims due
deliveries and posts them, a loop per team, each with up to `ROUTE_CRM_CONCURRENCY` posts at once. A
CRM that is down or hangs delays its own team's deliveries and nothing else: hand-offs, the SLA
clock and the other teams' CRMs go on. A post is tried `ROUTE_CRM_ATTEMPTS` times with capped
doubling back-off (longer when the CRM answers with Retry-After); an answer that retrying cannot
change (a 4xx but 408, 425 and 429, a redirect) or the last failed try dead-letters it on leads.dlq
with the reason, and `leadpipe requeue-crm` queues it again once the CRM's side is mended. Each post
carries the hand-off id as `Idempotency-Key`: a post whose answer was lost is sent again, and the
receiver drops the repeat. Deliveries still queued for a team whose webhook is no longer configured
are dead-lettered the same way when route starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import aiohttp
from aiokafka import ConsumerRecord
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.dead_letter import DeadLetter
from schemas.handoff import Handoff
from schemas.topics import TopicName
from services.route.config import RoutingConfig
from services.route.crm import (
    MAX_DETAIL_CHARS,
    SIGNATURE_HEADER,
    CrmJob,
    Verdict,
    next_delay,
    retry_after,
    sign,
)
from services.route.crm import verdict as verdict_of
from services.route.crm_queue import CrmQueue
from services.route.metrics import RouteMetrics
from services.route.settings import RouteSettings
from services.runtime.cancellation import honour_cancel
from services.runtime.codec import dead_letter, origin_of
from services.runtime.redis_retry import until_redis_answers
from services.runtime.side_consumer import consume_forever

log = logging.getLogger(__name__)

Decode = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[Handoff | None]]
DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]


@dataclass(frozen=True)
class Answer:
    """What one post came to; `error` says why it was not delivered, `asked` is a Retry-After."""

    verdict: Verdict
    error: str | None = None
    asked: float | None = None


class CrmDelivery:
    def __init__(
        self,
        settings: RouteSettings,
        *,
        config: RoutingConfig,
        queue: CrmQueue,
        decode: Decode,
        dead_letter: DeadLetterSink,
        metrics: RouteMetrics,
        secrets: Mapping[str, Sequence[str]],
    ) -> None:
        self.settings, self.queue = settings, queue
        self.decode, self.dead_letter, self.metrics = decode, dead_letter, metrics
        self.secrets = secrets  # by team (crm.team_secrets)
        # The teams with a webhook, each with a loop. The deliveries still queued for a team whose
        # webhook was removed from the config are given up at start (`give_up_unconfigured`).
        self.urls = {team.name: team.crm_webhook_url for team in config.teams if team.crm_webhook_url}
        self._wake = {team: asyncio.Event() for team in self.urls}

    async def handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """One fetch of leads.handoffs: every hand-off of a team with a webhook queued, in one round
        trip."""
        jobs = []
        for record in records:
            handoff = await self.decode(record)  # an unreadable one is dead-lettered
            if handoff is None or handoff.assignee.team not in self.urls or record.value is None:
                continue
            origin = origin_of(record)
            jobs.append(
                CrmJob(
                    lead_id=handoff.lead_id,
                    handoff_id=handoff.handoff_id,
                    team=handoff.assignee.team,
                    origin=origin,
                    body=record.value.decode(),
                    queued_at=time.time(),
                    handed_off_at=handoff.handed_off_at.timestamp(),
                )
            )
        if not jobs:
            return
        added = await until_redis_answers(partial(self.queue.add_many, jobs), "queue CRM deliveries")
        for job, queued in zip(jobs, added, strict=True):
            if queued:
                self.metrics.crm_deliveries.labels(job.team, "queued").inc()
        # Every team with a job in the fetch, queued now or not: a try whose answer was lost with
        # the connection may have queued jobs that the retry then finds queued already (and does not
        # count), and those must not wait for the next poll. A needless wake costs one claim.
        for team in {job.team for job in jobs}:
            self._wake[team].set()

    async def run(self, lags: dict[tuple[str, int], int]) -> None:
        """Queue and deliver until cancelled, reporting leads.handoffs' lag into `lags`."""
        s = self.settings
        if not self.urls:  # no webhook (left): only what earlier configs queued to give up
            await self.give_up_unconfigured_logged()
            return
        group = f"leadpipe-route{s.topic_suffix}-crm"
        timeout = aiohttp.ClientTimeout(total=s.crm_timeout_seconds)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(
                self.give_up_unconfigured_logged(),
                consume_forever(s, s.topic(TopicName.HANDOFFS), group, self.handle, lags=lags),
                *(self.deliver_forever(http, team) for team in self.urls),
            )

    async def give_up_unconfigured_logged(self) -> None:
        """`give_up_unconfigured`, waiting for Redis; any other failure is logged, not raised, so the
        other teams' deliveries go on (what is left stays queued, for the next start)."""
        try:
            await until_redis_answers(self.give_up_unconfigured, "give up unconfigured CRM deliveries")
        except Exception:
            log.exception("CRM deliveries of teams without a webhook not given up; tried at the next start")

    async def give_up_unconfigured(self) -> int:
        """Deliveries queued for a team whose webhook is no longer in the config (removed, or the team
        renamed or gone) would wait forever, as no loop claims them: each is dead-lettered with the
        reason and moved to the failed set, as a refused one is, so `leadpipe requeue-crm` queues it
        again once the webhook is back. Returns how many."""
        given_up = 0
        for team in sorted(await self.queue.queued_teams() - set(self.urls)):
            count = 0
            while jobs := await self.queue.waiting_jobs(team, 100):
                for job in jobs:
                    failed = job.failed(f"the CRM webhook of team {team} is no longer configured")
                    await self.dead_letter(self.unconfigured_letter(failed))  # before the queue lets go
                    await self.queue.give_up(failed, time.time())
                    self.metrics.crm_deliveries.labels(team, "dead_lettered").inc()
                    count += 1
            log.error(
                "%d CRM deliver%s of team %s given up: its webhook is no longer configured in %s; "
                "`leadpipe requeue-crm --team %s` queues them again once it is",
                count,
                "y" if count == 1 else "ies",
                team,
                self.settings.rules_file,
                team,
            )
            given_up += count
        return given_up

    async def deliver_forever(self, http: aiohttp.ClientSession, team: str) -> None:
        """The team's deliveries, each posted as soon as it is due and one of the team's
        `ROUTE_CRM_CONCURRENCY` slots is free: a post that waits for a slow CRM holds its own slot,
        not the posts queued after it, and a loop per team keeps one team's CRM from holding
        another's. Posts still waiting when the worker stops are cancelled; their claims come due
        again after the lease."""
        wake = self._wake[team]
        posting: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            posting.discard(task)
            wake.set()  # a slot is free

        try:
            while True:
                honour_cancel()  # a stop that a library swallowed still ends the loop
                wake.clear()
                free = self.settings.crm_concurrency - len(posting)
                claimed = await self.claim_due(team, free) if free > 0 else []
                for job in claimed:
                    task = asyncio.create_task(self.settle_logged(http, job))
                    posting.add(task)
                    task.add_done_callback(finished)
                if len(claimed) < free or free <= 0:  # else more may be due at once
                    with contextlib.suppress(TimeoutError):  # asyncio.timeout: see contact_fetch.py
                        async with asyncio.timeout(self.settings.crm_poll_seconds):
                            await wake.wait()
        finally:
            for task in posting:
                task.cancel()

    async def claim_due(self, team: str, limit: int) -> list[CrmJob]:
        """Up to `limit` of the team's due deliveries, claimed for the lease; none while Redis is away."""
        try:
            claimed = await self.queue.claim(team, time.time(), self.settings.crm_lease_seconds, limit)
            self.metrics.crm_waiting.labels(team).set(claimed.waiting)
            return claimed.jobs
        except (RedisError, OSError) as exc:
            log.warning("CRM delivery queue unavailable (%s); retrying", exc)
        except Exception:  # a bad round must not end the loop: its claims come due again
            log.exception("CRM delivery claim failed")
        return []

    async def settle_logged(self, http: aiohttp.ClientSession, job: CrmJob) -> None:
        try:
            await self.settle(http, job)
        except Exception as exc:  # Redis away, the dead letter not sent: the claim comes due again
            log.warning("CRM delivery %s not settled (%r); tried again after its lease", job.handoff_id, exc)

    async def settle(self, http: aiohttp.ClientSession, job: CrmJob) -> str:
        """Post `job` once and store what came of it; returns the outcome, as counted."""
        outcome = await self._settled(http, job)
        self.metrics.crm_deliveries.labels(job.team, outcome).inc()
        return outcome

    async def _settled(self, http: aiohttp.ClientSession, job: CrmJob) -> str:
        url = self.urls[job.team]
        answer = await post_handoff(
            http,
            url,
            job.body.encode(),
            secrets=self.secrets[job.team],
            delivery_id=job.handoff_id,
            attempt=job.attempts + 1,
        )
        if answer.verdict is Verdict.DELIVERED:
            await self.queue.done(job)
            self.metrics.crm_delivery_seconds.labels(job.team).observe(max(0.0, time.time() - job.queued_at))
            return "delivered"
        failed = job.failed(answer.error or answer.verdict.value)
        s = self.settings
        if answer.verdict is Verdict.RETRY and failed.attempts < s.crm_attempts:
            delay = next_delay(
                failed.attempts, s.crm_backoff_seconds, s.crm_backoff_max_seconds, answer.asked
            )
            await self.queue.retry(failed, time.time() + delay)
            log.warning(
                "CRM post %d of %s to %s failed: %s; next in %.0fs",
                failed.attempts,
                job.handoff_id,
                url,
                answer.error,
                delay,
            )
            return "retried"
        await self.dead_letter(self.letter(failed, url, answer))  # before the queue lets go of it
        await self.queue.give_up(failed, time.time())
        log.error(
            "CRM delivery of %s to %s given up after %d tries: %s",
            job.handoff_id,
            url,
            failed.attempts,
            answer.error,
        )
        return "dead_lettered"

    def letter(self, job: CrmJob, url: str, answer: Answer) -> DeadLetter:
        refused = answer.verdict is Verdict.REFUSED
        detail = (
            f"POST {url} (team {job.team}) {'refused' if refused else 'failed'} after "
            f"{job.attempts} tries: {answer.error}; `leadpipe requeue-crm` posts it again"
        )
        reason = "crm_webhook_refused" if refused else "crm_webhook_failed"
        return dead_letter("route", job.origin, job.body.encode(), reason, detail)

    def unconfigured_letter(self, job: CrmJob) -> DeadLetter:
        detail = (
            f"the CRM webhook of team {job.team} is no longer configured (no crm_webhook_url in "
            f"{self.settings.rules_file}); `leadpipe requeue-crm --team {job.team}` posts it again once it is"
        )
        return dead_letter("route", job.origin, job.body.encode(), "crm_webhook_unconfigured", detail)


async def post_handoff(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    secrets: Sequence[str],
    delivery_id: str,
    attempt: int,
    extra: Mapping[str, str] | None = None,
) -> Answer:
    """One signed POST of a hand-off's record and what its answer means (`leadpipe crm-ping` sends
    its example the same way)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "leadpipe-route",
        SIGNATURE_HEADER: sign(secrets, int(time.time()), body),
        "Idempotency-Key": delivery_id,
        "Leadpipe-Delivery": delivery_id,
        "Leadpipe-Attempt": str(attempt),
        **(extra or {}),
    }
    try:
        async with http.post(url, data=body, headers=headers, allow_redirects=False) as response:
            verdict = verdict_of(response.status)
            if verdict is Verdict.DELIVERED:
                return Answer(verdict)
            text = (await response.content.read(MAX_DETAIL_CHARS)).decode(errors="replace").strip()
            where = f", to {response.headers.get('Location')}" if 300 <= response.status < 400 else ""
            error = f"HTTP {response.status} {response.reason or ''}{where}".strip()
            asked = retry_after(response.headers.get("Retry-After"), utcnow())
            return Answer(verdict, f"{error}: {text}" if text else error, asked)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return Answer(Verdict.RETRY, f"{type(exc).__name__}: {exc}".rstrip(": "))
