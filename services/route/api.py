"""Route's small HTTP API for sales tools: rep availability, capacity and out-of-office.

Every /reps call needs a key from ROUTE_API_KEYS in the X-API-Key header: anyone who could reach
the port could otherwise take reps out of rotation. With no keys configured the API stays closed
(503) rather than open. /openapi.json, /healthz, /readyz and /metrics need no key.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import cast

from aiohttp import web
from faust.web import Request, Response, View
from pydantic import ValidationError

from schemas.base import new_event_id, utcnow
from schemas.sales import RepStatusUpdate
from services.route import domain, openapi
from services.route.api_models import RepList, RepOut, RepStatusIn
from services.route.router import Router
from services.runtime.api_keys import key_is_valid
from services.runtime.errors import FieldProblem, field_problems, summarise
from services.runtime.stream_app import StreamService

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"


class Refused(Exception):
    """A request the API answers with an error body (see api_models.Problem)."""

    def __init__(
        self, status: int, error: str, message: str, fields: list[FieldProblem] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, object] = {"error": error, "message": message}
        if fields:
            self.body["fields"] = fields


def check_key(request: Request, known_hashes: frozenset[str]) -> None:
    if not known_hashes:
        raise Refused(
            503,
            "api_keys_not_configured",
            "the rep API is closed: set ROUTE_API_KEYS (comma-separated keys or sha256:<hex> hashes)",
        )
    presented = request.headers.get(KEY_HEADER)
    if not presented:
        raise Refused(401, "missing_api_key", f"send a key from ROUTE_API_KEYS in the {KEY_HEADER} header")
    if not key_is_valid(presented, known_hashes):
        raise Refused(401, "invalid_api_key", "the API key is not valid")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (declared or actually sent, chunked too)."""
    too_large = Refused(413, "body_too_large", f"the body must be at most {limit} bytes")
    declared = request.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large
    stream = cast(web.Request, request).content
    body = bytearray()
    while chunk := await stream.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_change(raw: bytes) -> RepStatusIn:
    try:
        return RepStatusIn.model_validate_json(raw)
    except ValidationError as exc:
        problems = field_problems(exc)
        raise Refused(422, "invalid_body", summarise(problems), problems) from None


async def rep_view(router: Router, rep_id: str, now: datetime) -> RepOut | None:
    found = router.config.rep(rep_id)
    if found is None:
        return None
    team, rep = found
    status = (await router.store.statuses()).get(rep_id, domain.RepStatus())
    reason = domain.unavailable_reason(rep, team, status, now)
    return RepOut(
        rep_id=rep.id,
        team=team.name,
        weight=rep.weight,
        capacity=domain.capacity(rep, status),
        open_leads=(await router.store.loads()).get(rep_id, 0),
        available_now=reason is None,
        unavailable_because=reason,
        out_of_office_until=status.out_of_office_until,
    )


async def known_rep(router: Router, rep_id: str) -> RepOut:
    rep = await rep_view(router, rep_id, utcnow())
    if rep is None:
        raise Refused(404, "unknown_rep", f"no rep {rep_id!r} in the routing rules")
    return rep


def install(service: StreamService, router: Router, key_hashes: frozenset[str], max_body_bytes: int) -> None:
    if not key_hashes:
        log.warning("ROUTE_API_KEYS is not set: the rep API (/reps) answers 503 until it is")

    def answer(view: View, error: Refused) -> Response:
        return view.json(error.body, status=error.status)

    @service.app.page("/openapi.json")
    async def document(view: View, request: Request) -> Response:
        return view.json(openapi.build(max_body_bytes))

    @service.app.page("/reps")
    class RepsPage(View):
        async def get(self, request: Request) -> Response:
            try:
                check_key(request, key_hashes)
            except Refused as error:
                return answer(self, error)
            now = utcnow()
            reps = [await rep_view(router, rep.id, now) for team in router.config.teams for rep in team.reps]
            return self.json(RepList(reps=[r for r in reps if r]).model_dump(mode="json"))

    @service.app.page("/reps/{rep_id}")
    class RepPage(View):
        async def get(self, request: Request, rep_id: str) -> Response:
            try:
                check_key(request, key_hashes)
                rep = await known_rep(router, rep_id)
            except Refused as error:
                return answer(self, error)
            return self.json(rep.model_dump(mode="json"))

        async def put(self, request: Request, rep_id: str) -> Response:
            try:
                check_key(request, key_hashes)
                await known_rep(router, rep_id)
                change = parse_change(await read_body(request, max_body_bytes))
            except Refused as error:
                return answer(self, error)
            update = RepStatusUpdate(
                event_id=new_event_id(),
                occurred_at=utcnow(),
                rep_id=rep_id,
                **change.model_dump(exclude_unset=True),  # an explicit null resets; omitted keeps
            )
            await router.on_rep_status(update)
            return self.json((await known_rep(router, rep_id)).model_dump(mode="json"))
