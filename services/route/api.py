"""Route's small HTTP API for sales tools: rep availability, capacity and out-of-office."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from faust.web import Request, Response, View
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from schemas.base import new_event_id, utcnow
from schemas.sales import RepStatusUpdate
from services.route import domain
from services.route.router import Router
from services.runtime.stream_app import StreamService


class RepStatusIn(BaseModel):
    """Body of PUT /reps/{rep_id}; omitted fields keep their value."""

    model_config = ConfigDict(extra="forbid")

    available: bool | None = None
    capacity: int | None = Field(None, ge=0)
    out_of_office_until: AwareDatetime | None = None


async def rep_view(router: Router, rep_id: str, now: datetime) -> dict[str, Any] | None:
    found = router.config.rep(rep_id)
    if found is None:
        return None
    team, rep = found
    status = (await router.store.statuses()).get(rep_id, domain.RepStatus())
    reason = domain.unavailable_reason(rep, team, status, now)
    return {
        "rep_id": rep.id,
        "team": team.name,
        "weight": rep.weight,
        "capacity": domain.capacity(rep, status),
        "open_leads": (await router.store.loads()).get(rep_id, 0),
        "available_now": reason is None,
        "unavailable_because": reason.value if reason else None,
        "out_of_office_until": status.out_of_office_until.isoformat() if status.out_of_office_until else None,
    }


def install(service: StreamService, router: Router) -> None:
    @service.app.page("/reps")
    async def reps(view: View, request: Request) -> Response:
        now = utcnow()
        rows = [await rep_view(router, rep.id, now) for team in router.config.teams for rep in team.reps]
        return view.json({"reps": rows})

    @service.app.page("/reps/{rep_id}")
    class RepPage(View):
        async def get(self, request: Request, rep_id: str) -> Response:
            body = await rep_view(router, rep_id, utcnow())
            if body is None:
                return self.json({"error": f"unknown rep {rep_id!r}"}, status=404)
            return self.json(body)

        async def put(self, request: Request, rep_id: str) -> Response:
            if router.config.rep(rep_id) is None:
                return self.json({"error": f"unknown rep {rep_id!r}"}, status=404)
            try:
                change = RepStatusIn.model_validate_json(await request.read())
            except ValidationError as exc:
                return self.json(
                    {"error": "invalid body", "detail": exc.errors(include_url=False)}, status=422
                )
            update = RepStatusUpdate(
                event_id=new_event_id(), occurred_at=utcnow(), rep_id=rep_id, **change.model_dump()
            )
            await router.on_rep_status(update)
            return self.json(await rep_view(router, rep_id, utcnow()))
