"""Liveness and readiness: `/healthz` says the process runs, `/readyz` that it can do its job."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

Check = Callable[[], bool | Awaitable[bool]]


@dataclass
class Health:
    """Named readiness checks; ready when every check passes."""

    service: str
    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def report(self) -> tuple[bool, dict[str, bool]]:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                outcome = check()
                if inspect.isawaitable(outcome):
                    async with asyncio.timeout(3):  # not wait_for: see services/runtime/redis_client.py
                        outcome = await outcome
                results[name] = bool(outcome)
            except Exception:
                results[name] = False
        return all(results.values()), results


class Flag:
    """A readiness check that something has happened (started, partitions assigned, ...)."""

    def __init__(self) -> None:
        self.value = False

    def set(self) -> None:
        self.value = True

    def clear(self) -> None:
        self.value = False

    def __call__(self) -> bool:
        return self.value


def peers_ready(urls: Mapping[str, str], session_factory: Callable[[], aiohttp.ClientSession]) -> Check:
    """A check that every peer's `/readyz` answers 200 (the dev stack's front door waits for all)."""

    async def check() -> bool:
        if not urls:
            return True
        async with session_factory() as session:
            for url in urls.values():
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status != 200:
                            return False
                except (aiohttp.ClientError, TimeoutError):
                    return False
        return True

    return check
