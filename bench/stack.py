"""The real services as child processes on the bench's broker, and sampling them while they work.

Each service runs as `python -m services.<name>` with the environment `leadpipe dev` gives it, plus a
topic suffix per case so cases never see each other's records, consumer groups or Redis keys. The
harness reads what a worker did from its own `/metrics` counters and its CPU and memory from psutil.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil  # type: ignore[import-untyped,unused-ignore]

from bench import profile
from bench.case import BenchContext
from bench.prom import sample_sum
from services.devstack.processes import free_port, spawn, stop, tail

REPO = Path(__file__).resolve().parents[1]
PREFIXES = {
    "capture": "CAPTURE",
    "enrich": "ENRICH",
    "score": "SCORE",
    "route": "ROUTE",
    "nurture": "NURTURE",
}
API_KEY = "bench-key"
EVENTS_IN = "leadpipe_events_in_total"
EVENTS_OUT = "leadpipe_events_out_total"
# How often the harness reads every worker's /metrics: a scrape costs a worker a few milliseconds
# (enrich's page is the biggest), so twice a second is about 1% of its CPU.
SCRAPE_SECONDS = 0.5


def service_env(ctx: BenchContext, name: str, suffix: str, port: int, data_dir: Path) -> dict[str, str]:
    """What `leadpipe dev` sets for a service, on this case's suffix; capture without a rate limit."""
    prefix = PREFIXES[name]
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "LEADPIPE_BROKER_URL": f"kafka://{ctx.bootstrap_servers}",
            "REDIS_URL": ctx.redis_url,
            "LEADPIPE_TOPIC_PARTITIONS": str(ctx.partitions),
            "LEADPIPE_TOPIC_SUFFIX": suffix,
            "LEADPIPE_DATA_DIR": str(data_dir),
            f"{prefix}_WEB_PORT": str(port),
            f"{prefix}_WEB_HOST": "127.0.0.1",
        }
    )
    if name == "capture":
        env["CAPTURE_API_KEYS"] = API_KEY
        env["CAPTURE_RATE_LIMIT_PER_MINUTE"] = str(10**9)
    elif name == "route":
        env["ROUTE_REDIS_PREFIX"] = f"leadpipe:route{suffix}:"
    elif name == "nurture":
        env["NURTURE_MAILER_ENABLED"] = "false"  # no SMTP in the bench; commands still reach the outbox
    return env


@dataclass
class ServiceProcess:
    """One service worker; `start` again after `kill9` to measure recovery (logs are numbered)."""

    name: str
    env: dict[str, str]
    port: int
    log_dir: Path
    label: str = ""
    process: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.key}-{self.runs}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.runs += 1
        self.process = spawn(
            [sys.executable, "-m", f"services.{self.name}"], env=self.env, log_path=self.log_path
        )
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ps(self) -> psutil.Process:
        assert self.process is not None, f"{self.key} was never started"
        return psutil.Process(self.process.pid)

    def cpu_seconds(self) -> float:
        try:
            t = self.ps().cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def rss(self) -> int:
        try:
            return int(self.ps().memory_info().rss)
        except psutil.Error:
            return 0

    def kill9(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=10)

    def log(self, lines: int = 30) -> str:
        return f"--- {self.log_path}\n{tail(self.log_path, lines)}"

    async def ready(self, session: aiohttp.ClientSession, within: float = 180.0) -> float:
        """Seconds until `/readyz` answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < within:
            if not self.alive():
                raise RuntimeError(f"{self.key} exited during start-up\n{self.log()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.key} not ready within {within:.0f}s\n{self.log()}")

    async def metrics(self, session: aiohttp.ClientSession) -> str:
        async with session.get(f"{self.url}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as response:
            return await response.text()


class Services:
    """The workers of one case: started together, stopped together, logs shown on failure."""

    def __init__(self, ctx: BenchContext, case: str, suffix: str) -> None:
        self.ctx = ctx
        self.suffix = suffix
        self.log_dir = ctx.log_dir / case.replace(".", "-")
        self.data_dir = ctx.work_dir / case.replace(".", "-")
        self.members: dict[str, ServiceProcess] = {}

    def add(self, name: str, label: str = "", **env: str) -> ServiceProcess:
        port = free_port()
        key = label or name
        service_env_ = service_env(self.ctx, name, self.suffix, port, self.data_dir / key)
        service_env_.update(env)
        process = ServiceProcess(name, service_env_, port, self.log_dir, label=label)
        self.members[key] = process
        return process

    def __getitem__(self, key: str) -> ServiceProcess:
        return self.members[key]

    def __iter__(self) -> Iterator[ServiceProcess]:
        return iter(self.members.values())

    def start(self) -> None:
        for member in self.members.values():
            member.start()

    async def ready(self, session: aiohttp.ClientSession, within: float = 180.0) -> dict[str, float]:
        started = time.monotonic()
        took = {}
        for key, member in self.members.items():
            await member.ready(session, within=max(1.0, within - (time.monotonic() - started)))
            took[key] = time.monotonic() - started
        return took

    def stop(self) -> None:
        for member in self.members.values():
            member.stop()

    def logs(self) -> str:
        return "\n".join(member.log() for member in self.members.values())

    def crashed(self) -> list[str]:
        return [key for key, m in self.members.items() if m.process is not None and not m.alive()]


@dataclass(frozen=True)
class Probe:
    """A counter to follow: the sum of `sample` with `labels` in one service's `/metrics`."""

    name: str
    service: str
    sample: str = EVENTS_IN
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.time(), comparable with other processes' clocks on this machine
    counters: dict[str, float]
    cpu: dict[str, float]
    broker_cpu: float | None


def broker_cpu(ctx: BenchContext) -> float | None:
    if ctx.broker_pid is None:
        return None
    try:
        t = psutil.Process(ctx.broker_pid).cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


async def snapshot(
    session: aiohttp.ClientSession, ctx: BenchContext, services: Services, probes: Sequence[Probe]
) -> Snapshot:
    texts: dict[str, str] = {}
    for key in {p.service for p in probes}:
        texts[key] = await services[key].metrics(session)
    counters = {p.name: sample_sum(texts[p.service], p.sample, **p.labels) for p in probes}
    return Snapshot(
        at=time.time(),
        counters=counters,
        cpu={key: m.cpu_seconds() for key, m in services.members.items()},
        broker_cpu=broker_cpu(ctx),
    )


async def watch(
    session: aiohttp.ClientSession,
    ctx: BenchContext,
    services: Services,
    probes: Sequence[Probe],
    done: Callable[[list[Snapshot]], bool],
    *,
    within: float,
    interval: float = SCRAPE_SECONDS,
    stall_after: float = 90.0,
) -> list[Snapshot]:
    """Snapshots every `interval` until `done(snapshots)`; fails when a worker dies, time runs out, or
    no counter moved for `stall_after` seconds (then each worker's stacks are dumped next to its log)."""
    deadline = time.monotonic() + within
    snapshots: list[Snapshot] = []
    moved_at = time.monotonic()
    while True:
        crashed = services.crashed()
        if crashed:
            raise RuntimeError(f"{', '.join(crashed)} exited\n{services.logs()}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            snapshots.append(await snapshot(session, ctx, services, probes))
            if done(snapshots):
                return snapshots
            if len(snapshots) < 2 or snapshots[-1].counters != snapshots[-2].counters:
                moved_at = time.monotonic()
        last = snapshots[-1].counters if snapshots else {}
        if time.monotonic() - moved_at > stall_after:
            dumps = await asyncio.to_thread(dump_stacks, services)
            raise RuntimeError(
                f"stalled for {stall_after:.0f}s at {last}; stacks in {dumps}\n{services.logs()}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {within:.0f}s: {last}\n{services.logs()}")
        await asyncio.sleep(interval)


def dump_stacks(services: Services) -> list[str]:
    """py-spy dump (with locals) of every live worker, for a stall's post-mortem."""
    spy = profile.binary()
    written = []
    for member in services:
        if spy is None or member.process is None or not member.alive():
            continue
        out = member.log_dir / f"{member.key}-{member.runs}.stacks.txt"
        with out.open("w") as handle:
            subprocess.run(
                [spy, "dump", "--pid", str(member.process.pid), "--locals"],
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        written.append(str(out))
    return written
