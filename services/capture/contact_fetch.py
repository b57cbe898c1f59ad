"""Fetch the answers of Meta and LinkedIn leads and publish them as identify events.

Why: both platforms' webhooks carry a lead's id only. Capture publishes the id at once (the lead is
never lost), queues a fetch (`fetch_queue.py`), and a background loop fetches the answers from the
platform's API and publishes them. A failed fetch is retried with capped doubling back-off for
`contact_fetch_attempts` tries; a fetch the platform refuses for good (400, 404) is given up at once.
Given-up jobs stay in Redis's failed set with their last error. When Redis does not answer, the
fetch is retried in this process's memory instead, as before the queue: nothing waits on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.interaction import Interaction
from services.capture import platforms
from services.capture.fetch_queue import FetchJob, FetchQueue, Platform, job_id
from services.capture.ingest import Ingestor, Status
from services.capture.metrics import CaptureMetrics
from services.capture.settings import CaptureSettings
from services.runtime.backoff import retry_delay
from services.runtime.cancellation import honour_cancel

log = logging.getLogger(__name__)

PlatformFetch = Callable[[FetchJob], Awaitable[Interaction]]
StillQueued = Callable[[FetchJob], Awaitable[bool]]
CLAIM_LIMIT = 20  # fetches in flight per capture and round
RETRYABLE_CLIENT_ERRORS = frozenset({401, 403, 408, 429})  # a token fixed, a limit lifted: worth retrying
LINKEDIN_FIELDS = (  # the response, with its form's questions projected in
    "id,submittedAt,testLead,versionedLeadGenFormUrn,formResponse,form:(id,hiddenFields,content)"
)


class FetchFailed(Exception):
    """A fetch the platform answered with an error; `permanent`: retrying cannot help."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


async def _get_json(
    http: aiohttp.ClientSession, url: str, params: Mapping[str, str], headers: Mapping[str, str]
) -> Any:
    async with http.get(url, params=params, headers=headers) as response:
        if response.status >= 400:
            permanent = response.status < 500 and response.status not in RETRYABLE_CLIENT_ERRORS
            raise FetchFailed(f"HTTP {response.status} from {url}", permanent=permanent)
        return await response.json(content_type=None)


def meta_fetch(http: aiohttp.ClientSession, settings: CaptureSettings) -> PlatformFetch:
    """`GET {graph_url}/{leadgen_id}?fields=field_data,created_time`."""

    async def fetch(job: FetchJob) -> Interaction:
        lead = platforms.MetaLeadgen.model_validate(job.lead)
        params = {"fields": "field_data,created_time"}
        if settings.meta_access_token is not None:
            params["access_token"] = settings.meta_access_token.get_secret_value()
        body = await _get_json(http, f"{settings.graph_url.rstrip('/')}/{lead.leadgen_id}", params, {})
        field_data = body.get("field_data", []) if isinstance(body, dict) else []
        return platforms.meta_contact_interaction(
            lead, field_data, utcnow(), max_ahead=settings.max_clock_ahead
        )

    return fetch


def linkedin_fetch(http: aiohttp.ClientSession, settings: CaptureSettings) -> PlatformFetch:
    """`GET {linkedin_api_url}/leadFormResponses/{id}` with the form's questions projected in; the
    form itself (`GET /leadForms/{id}`) only when the projection did not bring its questions."""
    base = settings.linkedin_api_url.rstrip("/")

    async def fetch(job: FetchJob) -> Interaction:
        if settings.linkedin_access_token is None:
            raise FetchFailed("CAPTURE_LINKEDIN_ACCESS_TOKEN is not set", permanent=True)
        note = platforms.LinkedInNotification.model_validate(job.lead)
        headers = {
            "Authorization": f"Bearer {settings.linkedin_access_token.get_secret_value()}",
            "LinkedIn-Version": settings.linkedin_api_version,
            "X-Restli-Protocol-Version": "2.0.0",
        }
        response_id = quote(platforms.linkedin_response_id(note.leadGenFormResponse), safe="")
        body = await _get_json(
            http, f"{base}/leadFormResponses/{response_id}", {"fields": LINKEDIN_FIELDS}, headers
        )
        lead = platforms.LinkedInLead.model_validate(body)
        form = lead.form
        if form is None or form.content is None:
            form_id = platforms.linkedin_form_id(lead.versionedLeadGenFormUrn, note.leadGenForm)
            if form_id is not None:
                form = platforms.LinkedInForm.model_validate(
                    await _get_json(http, f"{base}/leadForms/{form_id}", {}, headers)
                )
        return platforms.linkedin_contact_interaction(
            note, lead, form, utcnow(), max_ahead=settings.max_clock_ahead
        )

    return fetch


def contact_sender_id(job: FetchJob) -> str:
    """The contact's idempotency key: a fetch repeated after a crash publishes it once."""
    return f"{job.platform}-contact:{job.ref}"


@dataclass(frozen=True)
class Tried:
    """What one try came to: published, discarded, or the job as it failed and whether to try again."""

    job: FetchJob
    published: bool = False
    again: bool = False
    discarded: bool = False  # dropped while it ran (the lead was deleted): fetched, not published


class ContactFetcher:
    """Runs the queue: `enqueue` from the webhooks, `run` as capture's background task."""

    def __init__(
        self,
        queue: FetchQueue,
        *,
        fetches: Mapping[str, PlatformFetch],
        ingestor: Ingestor,
        topic: str,
        settings: CaptureSettings,
        metrics: CaptureMetrics,
    ) -> None:
        self._queue = queue
        self._fetches = fetches
        self._ingestor = ingestor
        self._topic = topic
        self._settings = settings
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._in_memory: dict[str, asyncio.Task[None]] = {}  # one task per job id, never two
        # job ids cancelled in this process -> until when (monotonic), oldest first: what Redis's
        # tombstone says, for when Redis was away at the DELETED or is away at a later CREATED
        self._cancelled: dict[str, float] = {}
        self._undropped: dict[str, bool] = {}  # cancelled while Redis was away -> counted already

    async def enqueue(self, job: FetchJob) -> None:
        """Queue the fetch in Redis and wake the loop; with Redis away, retry it in memory. A lead
        cancelled in this process is not fetched, whether Redis answers or not."""
        if job.id in self._cancelled:
            return
        try:
            await self._queue.add(job)
        except (RedisError, OSError) as exc:
            if job.id in self._in_memory:  # the platform delivered the lead again: fetched already
                return
            log.warning("contact fetch %s not queued, Redis unavailable (%s); held in memory", job.id, exc)
            self._count(job, "unqueued")
            task = asyncio.create_task(self._retry_in_memory(job))
            self._in_memory[job.id] = task
            task.add_done_callback(lambda done: self._forget(job.id, done))
            return
        self._wake.set()

    def _forget(self, job_id: str, task: asyncio.Task[None]) -> None:
        if self._in_memory.get(job_id) is task:
            del self._in_memory[job_id]

    async def cancel(self, platform: Platform, ref: str) -> bool:
        """Fetch no more of a lead the platform deleted (LinkedIn's DELETED): its erasure is published,
        and answers fetched after it would make the person a lead again. A fetch already running
        finds its job gone before it publishes (`try_once`), and one held in memory is cancelled.
        The job id is remembered here too, so a fetch Redis could not drop (it was away) is dropped
        by the loop once Redis answers, and the lead is not queued again by this process. False when
        Redis was away: the caller asks the platform to deliver the deletion again, for the process
        may stop before its loop made the drop."""
        wanted = job_id(platform, ref)
        self._remember_cancelled(wanted)
        task = self._in_memory.pop(wanted, None)
        if task is not None:
            task.cancel()
            self._count_dropped(platform)
        try:
            dropped = await self._drop(wanted)
        except (RedisError, OSError) as exc:
            log.warning("contact fetch %s not dropped, Redis unavailable (%s); dropped later", wanted, exc)
            self._undropped[wanted] = task is not None
            return False
        if dropped and task is None:
            self._count_dropped(platform)
        return True

    async def _drop(self, wanted: str) -> int:
        return await self._queue.drop(wanted, self._settings.contact_fetch_dropped_ttl_seconds)

    async def _drop_undropped(self) -> None:
        """The drops `cancel` could not make while Redis was away; raises while it still is."""
        for wanted, counted in list(self._undropped.items()):
            if await self._drop(wanted) and not counted:
                self._count_dropped(wanted.split(":", 1)[0])
            del self._undropped[wanted]

    def _remember_cancelled(self, wanted: str) -> None:
        now = time.monotonic()
        while self._cancelled:  # oldest first (one TTL for all): stop at the first still live
            oldest, until = next(iter(self._cancelled.items()))
            if until > now:
                break
            del self._cancelled[oldest]
        self._cancelled.pop(wanted, None)
        self._cancelled[wanted] = now + self._settings.contact_fetch_dropped_ttl_seconds

    async def _holds(self, job: FetchJob) -> bool:
        return job.id not in self._cancelled and await self._queue.holds(job)

    def _count_dropped(self, platform: str) -> None:
        self._metrics.contact_fetches.labels(platform, "dropped").inc()

    async def run(self) -> None:
        """Claim due fetches and run them until cancelled; a failing round is logged, not fatal."""
        try:
            while True:
                honour_cancel()  # a stop that a library swallowed still ends the loop
                self._wake.clear()
                claimed = await self._round()
                if claimed < CLAIM_LIMIT:  # a full round may have left more due
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel that comes
                    # as its timeout fires (CPython gh-86296), as redis-py's did (redis_client.py)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._settings.contact_fetch_poll_seconds):
                            await self._wake.wait()
        finally:
            tasks = list(self._in_memory.values())
            for task in tasks:
                task.cancel()
            # ended before capture closes the HTTP session and the producer they use
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _round(self) -> int:
        try:
            if self._undropped:
                await self._drop_undropped()
            lease = self._settings.contact_fetch_lease_seconds
            jobs = await self._queue.claim(time.time(), lease, CLAIM_LIMIT)
            results = await asyncio.gather(*(self._settle(job) for job in jobs), return_exceptions=True)
            for job, result in zip(jobs, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("contact fetch %s not settled (%s); retried after its lease", job.id, result)
            self._metrics.contact_fetches_waiting.set(await self._queue.waiting())
            return len(jobs)
        except (RedisError, OSError) as exc:
            log.warning("contact fetch queue unavailable (%s); retrying", exc)
        except Exception:
            log.exception("contact fetch round failed")
        return 0

    async def _settle(self, job: FetchJob) -> None:
        tried = await self.try_once(job, self._holds)
        if tried.discarded:
            return  # dropped while it ran: nothing left to settle
        if tried.published:
            await self._queue.done(job)
        elif tried.again:
            await self._queue.retry(tried.job, time.time() + self._delay(tried.job))
        else:
            await self._queue.give_up(tried.job, time.time())

    async def _retry_in_memory(self, job: FetchJob) -> None:
        while True:
            tried = await self.try_once(job)
            if not tried.again:
                return
            job = tried.job
            await asyncio.sleep(self._delay(job))

    def _delay(self, job: FetchJob) -> float:
        settings = self._settings
        return retry_delay(
            job.attempts, settings.contact_fetch_backoff_seconds, settings.contact_fetch_backoff_max_seconds
        )

    async def try_once(self, job: FetchJob, still_queued: StillQueued | None = None) -> Tried:
        """Fetch and publish `job`'s contact once; counted and logged here.

        `still_queued` (a queued job's: `FetchQueue.holds`) is asked between the fetch and the
        publish: a DELETED handled while the platform answered dropped the job, and its answers are
        the deleted person's. A Redis error there ends the try unpublished (retried after its lease).
        The drop may still come between the check and the publish, a Redis read and a produce later;
        enrich then erases the known lead the contact makes (services/enrich/domain.py,
        `identity_follows`), as the contact is dated at the form's submission, before the erasure.
        A job held in memory needs no check: `cancel` cancels its task."""
        permanent, outcome_name = False, "failed"
        try:
            record = await self._fetches[job.platform](job)
        except FetchFailed as exc:
            error, permanent = str(exc), exc.permanent
        except ValidationError as exc:  # the platform answered in a shape we do not know
            error, permanent = f"unexpected answer: {exc.errors()[:3]}", True
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # an answer the mapping did not foresee: a failed try like the others
            # (raised on, it left the job leased and tried again forever, never counted or given up)
            log.exception("contact fetch of %s failed unexpectedly", job.id)
            error = f"{type(exc).__name__}: {exc}"
        else:
            if still_queued is not None and not await still_queued(job):
                self._count(job, "discarded")
                # no job id: it names the person who asked for the erasure
                log.info("a %s contact fetch was dropped while it ran; not published", job.platform)
                return Tried(job, discarded=True)
            outcome = await self._ingestor.submit(self._topic, record, contact_sender_id(job))
            if outcome.ok:
                self._count(job, "published")
                return Tried(job, published=True)
            if outcome.status is Status.TOO_LARGE:  # the same answers make the same record: give up
                error, permanent = str(outcome.answer["message"]), True
            else:
                error, outcome_name = f"broker unavailable ({outcome.status})", "broker_unavailable"
        failed = job.failed(error)
        if permanent or failed.attempts >= self._settings.contact_fetch_attempts:
            self._count(job, "gave_up")
            log.error(
                "gave up fetching the contact of %s after %d tries: %s (its lead id is published)",
                job.id,
                failed.attempts,
                error,
            )
            return Tried(failed)
        self._count(job, outcome_name)
        log.warning("contact fetch %d of %s failed: %s", failed.attempts, job.id, error)
        return Tried(failed, again=True)

    def _count(self, job: FetchJob, outcome: str) -> None:
        self._metrics.contact_fetches.labels(job.platform, outcome).inc()
