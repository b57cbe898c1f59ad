"""The SLA timer as faust runs it: a tick that fails is logged and counted, and the timer ticks on.

faust ends a timer at the first exception that escapes it and crashes the worker with it (mode's
`Service._execute_task`), so before this only Redis errors were survived."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest

from services.devstack.broker import EmbeddedBroker
from services.route.app import RouteService, create_app
from services.route.router import Outcome
from tests.integration.test_route_service import settings_for, write_rules

pytestmark = pytest.mark.integration

INTERVAL = 0.05


def the_timer(service: RouteService) -> Callable[[], Awaitable[None]]:
    """The SLA timer's task as faust starts it (`App.timer` wraps it in a loop over `itertimer`)."""
    for task in service.app._app_tasks:
        if getattr(task, "__name__", "") == "check_sla_deadlines":
            return cast(Callable[[], Awaitable[None]], task)
    raise AssertionError("no SLA timer installed")


def failures(service: RouteService, kind: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "leadpipe_route_sla_check_failures_total", {"kind": kind}
    )
    return value or 0.0


@pytest.fixture
async def service(
    broker: EmbeddedBroker, redis_url: str, suffix: str, tmp_path: Path
) -> AsyncIterator[RouteService]:
    """A route worker, not started: the test runs its SLA timer's task itself."""
    settings = settings_for(broker, redis_url, suffix, write_rules(tmp_path), f"test:{uuid.uuid4().hex}:")
    made = create_app(settings.model_copy(update={"sla_check_interval": INTERVAL}))
    yield made
    await made.close()


@pytest.mark.parametrize("where", ["on_due", "update_open_leads"])
async def test_a_failing_tick_is_logged_and_counted_and_the_timer_ticks_on(
    service: RouteService, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    ticks = 0

    async def on_due(now: datetime, lease_seconds: float) -> Outcome:
        nonlocal ticks
        ticks += 1
        if where == "on_due":
            raise RuntimeError("a bug in the breach path")
        return Outcome()

    async def loads() -> dict[str, int]:
        raise ValueError("a bug in the open-leads gauge")

    router: Any = service.router
    router.on_due = on_due
    if where == "update_open_leads":
        store: Any = service.store
        store.loads = loads
    with caplog.at_level(logging.ERROR, logger="services.route.agents"):
        timer = asyncio.create_task(the_timer(service)())
        for _ in range(200):
            if ticks >= 3 or timer.done():
                break
            await asyncio.sleep(INTERVAL)
        assert not timer.done(), timer.exception() if timer.done() else None
        assert ticks >= 3
        assert failures(service, "error") >= 2
        assert failures(service, "redis") == 0
        logged = [r for r in caplog.records if r.getMessage().startswith("SLA check failed")]
        assert logged and all(r.exc_info is not None for r in logged)
        # The worker stopping cancels the timer: that is not swallowed.
        timer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await timer
