"""Export answers: each service puts what it holds about a lead in Redis, the requester reads them.

The request travels on `privacy.requests` (so the worker owning the lead's partition answers); the
answer does not, because a topic keeps a copy of it until retention and an erasure cannot remove
it. The answer lives in one Redis hash per request (field = service) until shortly after the
requester stopped waiting, and the requester deletes it once read.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from schemas.privacy import PrivacyRecord
from services.runtime.redis_client import text_of

ANSWER_GRACE_SECONDS = 30
"""An answer outlives `answer_by` by this much, for a requester reading right at its deadline."""


def export_key(namespace: str, request_id: str) -> str:
    """Namespaced by the topic suffix, like capture's keys: pipelines sharing a Redis stay apart."""
    return f"leadpipe:privacy{namespace}:export:{request_id}"


async def put_answer(
    redis: Redis,
    namespace: str,
    request: PrivacyRecord,
    service: str,
    data: dict[str, Any],
    *,
    now: datetime,
) -> bool:
    """Store `service`'s answer unless the requester has stopped waiting; True when stored."""
    if request.answer_by is None or request.answer_by <= now:
        return False
    ttl = math.ceil((request.answer_by - now).total_seconds()) + ANSWER_GRACE_SECONDS
    key = export_key(namespace, request.event_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, service, json.dumps(data, default=str))
        pipe.expire(key, ttl)
        await pipe.execute()
    return True


async def answers(redis: Redis, namespace: str, request_id: str) -> dict[str, Any]:
    """service -> its answer, for the services that answered so far."""
    raw = cast(dict[Any, Any], await redis.hgetall(export_key(namespace, request_id)))
    return {text_of(service): json.loads(value) for service, value in raw.items()}


async def discard(redis: Redis, namespace: str, request_id: str) -> None:
    await redis.delete(export_key(namespace, request_id))
