"""Capture's privacy desk: erasure and export for admins, the erasure log, and the consent proof.

HTTP (admin key only): `POST /v1/privacy/erase` publishes an `erase` request on `privacy.requests`;
`GET /v1/privacy/erasures/{request_id}` shows which services reported it done; `POST
/v1/privacy/export` publishes an `export` request and collects each service's answer from Redis
(see services/privacy/exports.py) until `export_timeout`, saying which ones did not answer.

A consumer of `privacy.requests` (one group for all capture replicas) keeps the consent proof
ledger, erases capture's own data for every `erase` request whatever its source (admin, LinkedIn,
retention, cascade) and reports it with `erasure_completed`, and logs the completions of all
services. Capture's own lead data in Redis: the consent proof (pseudonymised, not deleted, see
consent.py) and the idempotency answers, which name the lead id (scrubbed, keeping the key so a
retried sender event stays a duplicate and does not bring the lead back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast

from aiohttp import web
from aiokafka import ConsumerRecord
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from schemas.base import utcnow
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.topics import TopicName
from services.capture import consent, domain
from services.capture.api_models import checked_email
from services.capture.auth import CLIENT
from services.capture.guard import seen_key
from services.capture.keys import CONSUMER_LAGS, METRICS, PUBLISHER, REDIS, SETTINGS
from services.capture.publisher import BrokerUnavailable, Publisher
from services.capture.redis_batch import SetMany
from services.capture.responses import problem
from services.capture.settings import CaptureSettings
from services.privacy import exports, records
from services.privacy.metrics import PrivacyMetrics, privacy_metrics
from services.privacy.policy import PrivacyPolicy, load_policy
from services.runtime.api_keys import key_is_valid
from services.runtime.cancellation import cancel_and_wait
from services.runtime.codec import encode
from services.runtime.errors import field_problems
from services.runtime.redis_client import text_of
from services.runtime.side_consumer import consume_forever

log = logging.getLogger(__name__)

SERVICE = "capture"
LEAD_ID = re.compile(r"^[ea]-[0-9a-f]{24}$")
EXPORT_POLL_SECONDS = 0.2
"""How often an export looks for answers; they arrive within a worker's processing time."""


# --- request and answer bodies (also in /openapi.json) ---------------------------------------------


class SubjectIn(BaseModel):
    """Whom a request is about: exactly one of lead id, e-mail or anonymous id."""

    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(None, max_length=128, examples=["e-3b1f0c9d2a7e44f1b6c8d0e2"])
    email: str | None = Field(None, max_length=320, examples=["jane.doe@example.com"])
    anonymous_id: str | None = Field(None, min_length=1, max_length=128)

    @field_validator("lead_id", "email", "anonymous_id", mode="after")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        """Whitespace names nobody: left as given, it reached the lead id's digest and answered 500."""
        return value.strip() or None if value is not None else None

    @field_validator("email", mode="after")
    @classmethod
    def _email_syntax(cls, value: str | None) -> str | None:
        """As `POST /v1/events` checks it: a mistyped address names no lead, and erasing or exporting
        its lead id reported success for nobody."""
        return checked_email(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> SubjectIn:
        given = [name for name in ("lead_id", "email", "anonymous_id") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError("give exactly one of lead_id, email, anonymous_id")
        if self.lead_id and not LEAD_ID.match(self.lead_id):
            raise ValueError("lead_id is not a leadpipe lead id (e-... or a-... and 24 hex digits)")
        return self

    def resolved(self) -> str:
        if self.lead_id:
            return self.lead_id
        lead_id, _ = domain.lead_identity(self.email, self.anonymous_id)
        return lead_id


class EraseIn(SubjectIn):
    reason: str | None = Field(None, max_length=200, examples=["data subject request 2026-11-21"])


class ErasureAccepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    request_id: str = Field(description="Look the erasure up at /v1/privacy/erasures/{request_id}.")
    lead_id: str


class ServiceErasure(BaseModel):
    at: str
    erased: dict[str, int]


class ErasureLog(BaseModel):
    request_id: str
    requested_at: str | None = None
    requested_by: str | None = None
    completed: dict[str, ServiceErasure]
    pending: list[str] = Field(description="Services that have not reported the erasure yet.")
    complete: bool


class ExportOut(BaseModel):
    lead_id: str
    complete: bool = Field(description="False when a service did not answer within the export timeout.")
    missing: list[str]
    services: dict[str, JsonValue] = Field(description="Each service's data about the lead, as it holds it.")


# --- the desk --------------------------------------------------------------------------------------


# The keys of one scan page whose value holds ARGV[1] (plain text, not a pattern), each followed by
# its value: a page of idempotency entries filtered in one round trip.
_NAMING = """
local found = {}
for _, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value and string.find(value, ARGV[1], 1, true) then
    found[#found + 1] = key
    found[#found + 1] = value
  end
end
return found
"""


@dataclass
class PrivacyDesk:
    settings: CaptureSettings
    redis: Redis
    publisher: Publisher
    policy: PrivacyPolicy
    metrics: PrivacyMetrics
    _set_many: SetMany = field(init=False)
    _naming: AsyncScript = field(init=False)

    def __post_init__(self) -> None:
        self._set_many = SetMany(self.redis)
        self._naming = self.redis.register_script(_NAMING)

    @property
    def namespace(self) -> str:
        return self.settings.topic_suffix

    @property
    def salt(self) -> str:
        return self.settings.privacy_salt.get_secret_value()

    @property
    def expected(self) -> list[str]:
        """Every service that must answer: the configured ones and capture itself."""
        return list(dict.fromkeys([*self.settings.privacy_services, SERVICE]))

    def consent_key(self, subject: str) -> str:
        return f"leadpipe:capture{self.namespace}:consent:{subject}"

    def log_key(self, request_id: str) -> str:
        return f"leadpipe:privacy{self.namespace}:erasure:{request_id}"

    def idempotency_pattern(self) -> str:
        """The idempotency keys, named as the deduplicator names them so the two never drift apart."""
        return seen_key(self.namespace, "*")

    async def publish(self, record: PrivacyRecord) -> None:
        await self.publisher.publish(
            self.settings.topic(TopicName.PRIVACY), record.lead_id.encode(), encode(record)
        )

    # -- records from privacy.requests --

    async def handle(self, raws: Sequence[bytes | None]) -> None:
        """A fetch's records, in order. Consecutive consent records share two round trips (their
        proofs read together, the changed ones written together): one by one, they cost capture
        7% of its CPU at 1,000 events/s (docs/performance.md, eighteenth pass)."""
        proofs: list[PrivacyRecord] = []
        for raw in raws:
            try:
                record = PrivacyRecord.model_validate_json(raw or b"")
            except ValidationError:
                self.metrics.handled("unreadable")
                continue
            if record.kind in consent.PROOF_KINDS:
                proofs.append(record)
                continue
            await self.record_proofs(proofs)  # before an erasure that may pseudonymise them
            proofs = []
            if record.kind is PrivacyRequestKind.ERASE:
                await self.erase_own(record)
            elif record.kind is PrivacyRequestKind.ERASURE_COMPLETED:
                await self.log_completion(record)
        await self.record_proofs(proofs)

    async def record_proofs(self, records: Sequence[PrivacyRecord]) -> None:
        """Add consent records to their subjects' proofs, in order (a subject may come twice)."""
        if not records:
            return
        keys = [self.consent_key(consent.subject_of(record.lead_id, self.salt)) for record in records]
        unique = list(dict.fromkeys(keys))
        stored = await self.redis.mget(unique)
        proofs = {
            key: consent.ConsentProof.model_validate_json(raw) if raw else None
            for key, raw in zip(unique, stored, strict=True)
        }
        changed: dict[str, consent.ConsentProof] = {}
        for record, key in zip(records, keys, strict=True):
            current = proofs[key]
            proof = consent.record_consent(current, record, self.salt)
            if proof != current:
                proofs[key] = changed[key] = proof
                self.metrics.handled(record.kind.value)
        await self._store_proofs(changed)

    async def _store_proofs(self, proofs: dict[str, consent.ConsentProof]) -> None:
        """Each proof under its key, kept for the policy's retention, in one round trip."""
        ttl = int(self.policy.consent_proof_retention.total_seconds())
        await self._set_many([(key, proof.model_dump_json()) for key, proof in proofs.items()], ttl)

    async def erase_own(self, request: PrivacyRecord) -> None:
        """Pseudonymise the consent proof, scrub the idempotency answers, report what was done."""
        now = utcnow()
        erased = {"consent_proof_pseudonymised": 0, "idempotency_answers": 0}
        key = self.consent_key(consent.subject_of(request.lead_id, self.salt))
        raw = await self.redis.get(key)
        if raw:
            proof = consent.ConsentProof.model_validate_json(raw)
            if proof.lead_id is not None:
                await self._store_proofs({key: consent.pseudonymise(proof, now)})
                erased["consent_proof_pseudonymised"] = 1
        async for entry_key, answer in self._idempotency_answers(request.lead_id):
            answer.pop("lead_id", None)
            answer["erased"] = True
            await self.redis.set(entry_key, json.dumps(answer), keepttl=True, xx=True)
            erased["idempotency_answers"] += 1
        self.metrics.handled("erase")
        self.metrics.count_erased(erased)
        await self.publish(records.erasure_completed(request, SERVICE, erased, now))

    async def _idempotency_answers(self, lead_id: str) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
        """Idempotency entries naming the lead. A scan: erasures are rare, and an index of them
        would be one more place holding the lead id. Each page of the scan is read and filtered
        inside Redis (`_NAMING`): a GET per key cost capture 110 µs of CPU per idempotency entry,
        22 s per erasure at 200,000 entries (docs/performance.md, eighteenth pass)."""
        pattern, cursor = self.idempotency_pattern(), 0
        while True:
            cursor, keys = await self.redis.scan(cursor, match=pattern, count=1000)
            found = await self._naming(keys=keys, args=[lead_id]) if keys else []
            for key, value in zip(found[::2], found[1::2], strict=True):
                with contextlib.suppress(ValueError):
                    answer = json.loads(value)
                    if isinstance(answer, dict) and answer.get("lead_id") == lead_id:
                        yield key, answer
            if cursor == 0:
                return

    # -- the erasure log (request id, who, when, counts; no personal data) --

    async def log_request(self, request: PrivacyRecord) -> None:
        entry = {"at": request.occurred_at.isoformat(), "by": request.requested_by}
        await self._log(request.event_id, "_request", json.dumps(entry))

    async def log_completion(self, record: PrivacyRecord) -> None:
        if record.in_reply_to and record.service:
            entry = {"at": record.occurred_at.isoformat(), "erased": record.erased}
            await self._log(record.in_reply_to, record.service, json.dumps(entry))

    async def _log(self, request_id: str, field: str, value: str) -> None:
        key = self.log_key(request_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, field, value)  # the first answer wins; a redelivery changes nothing
            pipe.expire(key, int(self.policy.erasure_log_retention.total_seconds()))
            await pipe.execute()

    async def erasure_log(self, request_id: str) -> ErasureLog | None:
        raw = cast(dict[Any, Any], await self.redis.hgetall(self.log_key(request_id)))
        if not raw:
            return None
        entries = {text_of(k): json.loads(v) for k, v in raw.items()}
        asked = entries.pop("_request", {})
        completed = {name: ServiceErasure(**entry) for name, entry in entries.items()}
        pending = [name for name in self.expected if name not in completed]
        return ErasureLog(
            request_id=request_id,
            requested_at=asked.get("at"),
            requested_by=asked.get("by"),
            completed=completed,
            pending=pending,
            complete=not pending,
        )

    # -- export --

    async def own_export(self, lead_id: str) -> dict[str, Any]:
        raw = await self.redis.get(self.consent_key(consent.subject_of(lead_id, self.salt)))
        sender_ids = []
        prefix_length = len(self.idempotency_pattern()) - 1
        async for key, _ in self._idempotency_answers(lead_id):
            sender_ids.append(text_of(key)[prefix_length:])
        return {
            "consent_proof": json.loads(raw) if raw else None,
            "idempotency_sender_ids": sender_ids,
        }

    async def collect(self, request: PrivacyRecord) -> dict[str, Any]:
        """The services' answers, waiting until all are in or `answer_by`; then removed from Redis."""
        wanted = set(self.expected) - {SERVICE}
        deadline = (request.answer_by or utcnow()).timestamp()
        found: dict[str, Any] = {}
        while True:
            with contextlib.suppress(RedisError, OSError):
                found = await exports.answers(self.redis, self.namespace, request.event_id)
            if wanted <= set(found) or time.time() >= deadline:
                break
            await asyncio.sleep(EXPORT_POLL_SECONDS)
        with contextlib.suppress(RedisError, OSError):
            await exports.discard(self.redis, self.namespace, request.event_id)
        return found


PRIVACY = web.AppKey("privacy_desk", PrivacyDesk)


# --- HTTP ------------------------------------------------------------------------------------------


def add_routes(app: web.Application) -> None:
    """Routes, the desk and (unless switched off) the privacy.requests consumer."""
    settings = app[SETTINGS]
    app[PRIVACY] = PrivacyDesk(
        settings=settings,
        redis=app[REDIS],
        publisher=app[PUBLISHER],
        policy=load_policy(settings.privacy_file, settings.topics_file),
        metrics=privacy_metrics(SERVICE, app[METRICS].registry),
    )
    app.router.add_post("/v1/privacy/erase", post_erase)
    app.router.add_get("/v1/privacy/erasures/{request_id}", get_erasure)
    app.router.add_post("/v1/privacy/export", post_export)
    if settings.privacy_consumer:
        app.cleanup_ctx.append(_consumer_lifecycle)


def _admin_refusal(request: web.Request) -> web.Response | None:
    """None for an admin key; the API-key middleware has already refused requests without a valid key."""
    known = request.app[SETTINGS].admin_key_hashes
    if not known:
        return problem(403, "admin_key_required", "no admin key is configured (CAPTURE_ADMIN_KEYS)")
    if not key_is_valid(request.headers.get("X-API-Key", ""), known):
        return problem(403, "admin_key_required", "this needs an admin key")
    return None


async def _body(request: web.Request, model: type[SubjectIn]) -> SubjectIn | web.Response:
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as exc:
        return problem(422, "validation_failed", "not a valid privacy request", fields=field_problems(exc))


def _requester(request: web.Request) -> str:
    client = request.get(CLIENT)
    return f"admin:{client}" if client else "admin"


async def post_erase(request: web.Request) -> web.Response:
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    body = await _body(request, EraseIn)
    if isinstance(body, web.Response):
        return body
    desk = request.app[PRIVACY]
    record = PrivacyRecord(
        event_id=f"erase-{uuid.uuid4().hex}",
        occurred_at=utcnow(),
        lead_id=body.resolved(),
        kind=PrivacyRequestKind.ERASE,
        requested_by=_requester(request),
        reason=getattr(body, "reason", None),
    )
    try:
        await desk.log_request(record)
    except (RedisError, OSError) as exc:  # the completions are still logged as they arrive
        log.warning("erasure request not logged, Redis unavailable: %s", type(exc).__name__)
    try:
        await desk.publish(record)
    except BrokerUnavailable:
        return _unavailable(request)
    answer = ErasureAccepted(request_id=record.event_id, lead_id=record.lead_id)
    return web.json_response(answer.model_dump(), status=202)


async def get_erasure(request: web.Request) -> web.Response:
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    request_id = request.match_info["request_id"]
    try:
        entry = await request.app[PRIVACY].erasure_log(request_id)
    except (RedisError, OSError):
        return _unavailable(request)
    if entry is None:
        return problem(404, "unknown_request", "no erasure with this request id is logged")
    return web.json_response(entry.model_dump())


async def post_export(request: web.Request) -> web.Response:
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    body = await _body(request, SubjectIn)
    if isinstance(body, web.Response):
        return body
    desk = request.app[PRIVACY]
    now = utcnow()
    record = PrivacyRecord(
        event_id=f"export-{uuid.uuid4().hex}",
        occurred_at=now,
        lead_id=body.resolved(),
        kind=PrivacyRequestKind.EXPORT,
        requested_by=_requester(request),
        answer_by=now + timedelta(seconds=desk.settings.export_timeout),
    )
    try:
        await desk.publish(record)
        own = await desk.own_export(record.lead_id)
    except BrokerUnavailable:
        return _unavailable(request)
    except (RedisError, OSError):
        return _unavailable(request)
    desk.metrics.handled("export")
    services = {**await desk.collect(record), SERVICE: own}
    missing = [name for name in desk.expected if name not in services]
    answer = ExportOut(lead_id=record.lead_id, complete=not missing, missing=missing, services=services)
    return web.json_response(answer.model_dump(mode="json"), headers={"Cache-Control": "no-store"})


def _unavailable(request: web.Request) -> web.Response:
    return problem(
        503,
        "unavailable",
        "the request was not recorded; retry later",
        headers={"Retry-After": str(request.app[SETTINGS].retry_after_seconds)},
    )


# --- the privacy.requests consumer -----------------------------------------------------------------


async def _consumer_lifecycle(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(consume(app[SETTINGS], app[PRIVACY], app[CONSUMER_LAGS]))
    yield
    await cancel_and_wait(task)


async def consume(settings: CaptureSettings, desk: PrivacyDesk, lags: dict[tuple[str, int], int]) -> None:
    """Handle every privacy record once per capture group (every handler is idempotent), reporting
    the lag of each partition into `lags`."""
    group = f"leadpipe-capture{settings.topic_suffix}-privacy"

    async def handle(records: list[ConsumerRecord[bytes, bytes]]) -> None:
        await desk.handle([record.value for record in records])

    await consume_forever(settings, settings.topic(TopicName.PRIVACY), group, handle, lags=lags)
