"""Count every event end to end: what was sent, which effects came out, what is missing or doubled.

A run sends a workload of leads through capture's HTTP API, each event with its own id, and reads
the pipeline's outputs (topics, the SMTP mailbox and the CRM webhook's posts). Every effect has an
identity (what it is about) and an id (which publication it is):

| effect        | identity                        | id            | a second one is            |
|---------------|---------------------------------|---------------|----------------------------|
| interaction   | event id                        | event id      | harmless (same id)         |
| enriched      | the interaction's event id      | record id     | harmless when the same id  |
| stage change  | (lead, kind, from, to)          | change id     | a duplicate if another id  |
| hand-off      | lead                            | hand-off id   | a duplicate if another id  |
| CRM post      | lead                            | hand-off id   | a duplicate if another id  |
| outbox        | (lead, sequence, step)          | command id    | a duplicate if another id  |
| e-mail        | (lead, sequence, step)          | each delivery | always a duplicate         |

Lost = expected identities never seen. Duplicated = identities with more than one distinct id (a
second hand-off, a second e-mail). Repeats = the same id published again after a replay, which
consumers drop by id (at-least-once with idempotent effects; a CRM post sent again after a crash
carries its hand-off id as Idempotency-Key). Unexpected = identities the workload cannot produce,
the sign of a service that forgot its state.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from schemas.topics import TopicName
from services.capture.auth import client_of
from services.capture.domain import lead_identity, published_event_id
from services.nurture.domain import command_id
from services.runtime.cancellation import cancel_and_wait
from services.runtime.codec import encode

HOT = "hot"
NURTURE = "nurture"
SEQUENCE = "welcome"
STEPS = 3  # tests/faults/stack.py NURTURE: welcome-1..3
OUTPUTS = (
    TopicName.INTERACTIONS,
    TopicName.ENRICHED,
    TopicName.STAGE_CHANGES,
    TopicName.HANDOFFS,
    TopicName.NURTURE_OUTBOX,
    TopicName.DLQ,
)
Identity = Hashable


@dataclass(frozen=True)
class Lead:
    """A hot lead asks for a demo (one hand-off); a nurture lead browses with consent (three e-mails)."""

    lead_id: str
    kind: str
    email: str
    events: tuple[dict[str, Any], ...]


def workload(run: str, leads: int) -> list[Lead]:
    """`leads` leads for run `run`, alternately hot and nurture, each with two events of its own."""
    made = []
    for n in range(leads):
        kind = HOT if n % 2 == 0 else NURTURE
        email = f"{kind}.{run}.{n}@northwind-traders.com"
        lead_id, _ = lead_identity(email, None)
        contact = {"email": email, "first_name": "Kim", "job_title": "VP Marketing", "country": "DE"}
        # A hot lead's demo request comes first, so it is MQL and hot from its first event and never
        # enrols in nurture; its page view then changes nothing.
        types = ("demo_request", "page_view") if kind == HOT else ("page_view", "page_view")
        events = tuple(
            {
                "event_id": f"{run}-{n}-{i}",
                "type": type_,
                "occurred_at": datetime.now(UTC).isoformat(),
                "contact": contact,
                "source": {"channel": "web", "utm_campaign": "faults"},
                "properties": {"url": f"/blog/{i}"} if type_ == "page_view" else {},
            }
            for i, type_ in enumerate(types)
        )
        made.append(Lead(lead_id, kind, email, events))
    return made


def expected_effects(leads: Iterable[Lead], client: str | None = None) -> dict[str, set[Identity]]:
    """What the workload must produce (the scoring, routing and nurture rules of the fault stack);
    `client`: the API client that sends it, whose events capture publishes under ids of its own
    (`published_event_id`)."""
    out: dict[str, set[Identity]] = {name: set() for name in EFFECTS}
    for lead in leads:
        ids = {published_event_id(event["event_id"], client) for event in lead.events}
        out["interaction"] |= ids
        out["enriched"] |= ids
        if lead.kind == HOT:
            out["stage change"] |= {
                (lead.lead_id, "lifecycle", "raw", "mql"),
                (lead.lead_id, "temperature", "cold", "hot"),
            }
            out["hand-off"].add(lead.lead_id)
            out["CRM post"].add(lead.lead_id)
        else:
            out["stage change"].add((lead.lead_id, "lifecycle", "raw", "iql"))
            steps = {(lead.lead_id, SEQUENCE, step) for step in range(STEPS)}
            out["outbox"] |= steps
            out["e-mail"] |= steps
    return out


EFFECTS = ("interaction", "enriched", "stage change", "hand-off", "CRM post", "outbox", "e-mail")


@dataclass(frozen=True)
class EffectTally:
    name: str
    expected: int
    seen: int
    missing: int
    duplicated: int
    repeats: int
    unexpected: int
    examples: tuple[str, ...] = ()


def tally(name: str, expected: set[Identity], published: Iterable[tuple[Identity, str]]) -> EffectTally:
    """Compare (identity, id) pairs with the expected identities."""
    ids: dict[Identity, list[str]] = defaultdict(list)
    for identity, effect_id in published:
        ids[identity].append(effect_id)
    seen = expected & ids.keys()
    duplicated = [i for i in seen if len(set(ids[i])) > 1]
    unexpected = [i for i in ids if i not in expected]
    repeats = sum(len(v) - len(set(v)) for v in ids.values())
    examples = [f"missing {i}" for i in list(expected - seen)[:3]]
    examples += [f"duplicated {i}: {sorted(set(ids[i]))}" for i in duplicated[:3]]
    examples += [f"unexpected {i}" for i in unexpected[:3]]
    return EffectTally(
        name,
        expected=len(expected),
        seen=len(seen),
        missing=len(expected) - len(seen),
        duplicated=len(duplicated),
        repeats=repeats,
        unexpected=len(unexpected),
        examples=tuple(examples),
    )


@dataclass
class Report:
    """One run's figures; `summary()` is the line the tests print (and docs/reliability.md quotes)."""

    label: str
    leads: int
    events_sent: int
    events_accepted: int
    answers: Counter[str]
    effects: list[EffectTally]
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return sum(e.expected for e in self.effects)

    @property
    def seen(self) -> int:
        return sum(e.seen for e in self.effects)

    @property
    def lost(self) -> int:
        return sum(e.missing for e in self.effects)

    @property
    def duplicated(self) -> int:
        return sum(e.duplicated for e in self.effects)

    @property
    def repeats(self) -> int:
        return sum(e.repeats for e in self.effects)

    @property
    def unexpected(self) -> int:
        return sum(e.unexpected for e in self.effects)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0

    def summary(self) -> str:
        retried = ", ".join(f"{k} x{v}" for k, v in sorted(self.answers.items()) if k != "202")
        times = ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
        return (
            f"[{self.label}] events sent {self.events_sent} (accepted {self.events_accepted}"
            f"{'; retried after ' + retried if retried else ''}), effects expected {self.expected}, "
            f"seen {self.seen}, lost {self.lost}, duplicated {self.duplicated}, "
            f"unexpected {self.unexpected}, harmless repeats {self.repeats}{'; ' + times if times else ''}"
            + "".join(f"; {note}" for note in self.notes)
        )

    def details(self) -> str:
        lines = [self.summary()]
        for e in self.effects:
            lines.append(
                f"  {e.name:<13} expected {e.expected:>4} seen {e.seen:>4} missing {e.missing:>3} "
                f"duplicated {e.duplicated:>3} repeats {e.repeats:>3} unexpected {e.unexpected:>3}"
            )
            lines.extend(f"    {example}" for example in e.examples)
        return "\n".join(lines)


class Collector:
    """Reads the output topics from the beginning, in the background, keeping this run's leads only."""

    def __init__(self, bootstrap: str, topics: Iterable[str], keys: set[bytes]) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.keys = keys
        self.records: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.unreadable: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            metadata_max_age_ms=5000,
        )
        await consumer.start()
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=250)
                for tp, batch in batches.items():
                    for record in batch:
                        if record.key not in self.keys:
                            continue
                        try:
                            value = orjson.loads(record.value or b"")
                        except orjson.JSONDecodeError:
                            value = None
                        if isinstance(value, dict):
                            value["__where"] = (record.partition, record.offset)  # for post-mortems
                            self.records[tp.topic].append(value)
                        else:
                            self.unreadable[tp.topic] += 1  # a poison record some test wrote
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)


class Sender:
    """POSTs each lead's events in order (the next only after a 202), retrying refusals like a client."""

    def __init__(
        self, url: str, api_key: str, *, rate: float, concurrency: int = 4, within: float = 300
    ) -> None:
        self.url = f"{url}/v1/events"
        self.headers = {"X-API-Key": api_key}
        self.interval = 1.0 / rate
        self.concurrency = concurrency
        self.within = within
        self.sent = 0
        self.accepted = 0
        self.answers: Counter[str] = Counter()
        self._next_slot = 0.0
        self._progress = asyncio.Condition()

    async def run(self, leads: list[Lead]) -> None:
        queue: asyncio.Queue[Lead] = asyncio.Queue()
        for lead in leads:
            queue.put_nowait(lead)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=self.headers, timeout=timeout) as session:
            await asyncio.gather(*(self._drain(session, queue) for _ in range(self.concurrency)))

    async def _drain(self, session: aiohttp.ClientSession, queue: asyncio.Queue[Lead]) -> None:
        while not queue.empty():
            lead = queue.get_nowait()
            for event in lead.events:
                await self._post(session, event)

    async def _pace(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        await asyncio.sleep(slot - now)

    async def _post(self, session: aiohttp.ClientSession, event: dict[str, Any]) -> None:
        await self._pace()
        self.sent += 1
        deadline = time.monotonic() + self.within
        delay = 0.2
        while True:
            try:
                async with session.post(self.url, json=event) as response:
                    await response.read()
                    self.answers[str(response.status)] += 1
                    if response.status == 202:
                        break
                    assert response.status in (409, 429, 500, 502, 503), (response.status, event)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers[type(exc).__name__] += 1
            assert time.monotonic() < deadline, f"event {event['event_id']} not accepted in {self.within}s"
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        async with self._progress:
            self.accepted += 1
            self._progress.notify_all()

    async def reached(self, count: int) -> None:
        """Wait until `count` events were accepted."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.accepted >= count)


class Run:
    """One fault test's traffic and its accounting, against a running pipeline."""

    def __init__(
        self,
        label: str,
        *,
        bootstrap: str,
        capture_url: str,
        api_key: str,
        mailbox: Callable[[], list[tuple[str, str]]],
        crm: Callable[[], list[tuple[str, str]]],
        leads: int,
        rate: float = 25.0,
        patience: float = 90.0,
        extra_keys: Iterable[bytes] = (),
    ) -> None:
        self.label = label
        self.patience = patience  # seconds to wait for what is still missing before calling it lost
        self.bootstrap = bootstrap
        self.run_id = uuid.uuid4().hex[:8]
        self.leads = workload(self.run_id, leads)
        self.expected = expected_effects(self.leads, client_of(api_key))
        self.mailbox = mailbox  # (command id, recipient) of every e-mail delivered
        self.crm = crm  # (lead id, hand-off id) of every CRM post taken
        self.sender = Sender(capture_url, api_key, rate=rate)
        keys = {lead.lead_id.encode() for lead in self.leads} | set(extra_keys)
        self.collector = Collector(bootstrap, OUTPUTS, keys)
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self._started = time.monotonic()
        self._sending: asyncio.Task[None] | None = None
        self.commands = {
            command_id(lead.lead_id, SEQUENCE, 1, step): (lead.lead_id, SEQUENCE, step)
            for lead in self.leads
            if lead.kind == NURTURE
            for step in range(STEPS)
        }

    @property
    def events(self) -> int:
        return sum(len(lead.events) for lead in self.leads)

    async def __aenter__(self) -> Run:
        await self.collector.start()
        await self.grant_consent()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sending is not None and not self._sending.done():
            await cancel_and_wait(self._sending)
        await self.collector.stop()

    async def grant_consent(self) -> None:
        """Confirmed double opt-in for the nurture leads, as the confirmation link would record it."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            for lead in self.leads:
                if lead.kind == NURTURE:
                    record = PrivacyRecord(
                        event_id=f"{lead.lead_id}-consent",
                        occurred_at=datetime.now(UTC),
                        lead_id=lead.lead_id,
                        kind=PrivacyRequestKind.CONSENT_CONFIRMED,
                        requested_by="data-subject",
                        consent_text_version="v1",
                        consent_source="web",
                    )
                    await producer.send_and_wait(
                        TopicName.PRIVACY, key=lead.lead_id.encode(), value=encode(record)
                    )
        finally:
            await producer.stop()

    def start_sending(self) -> None:
        self._started = time.monotonic()
        self._sending = asyncio.create_task(self.sender.run(self.leads))

    async def accepted(self, fraction: float) -> None:
        """Wait until this share of the events was accepted (the moment to inject a fault)."""
        await asyncio.wait_for(self.sender.reached(max(1, int(self.events * fraction))), 300)

    async def finish(self, *, settle: float = 3.0) -> Report:
        """Wait for every sent event to be accepted and every expected effect, then count."""
        assert self._sending is not None
        within = self.patience
        await asyncio.wait_for(self._sending, within)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.report().lost:
                break
            await asyncio.sleep(0.5)
        self.timings["all effects after"] = time.monotonic() - self._started
        await asyncio.sleep(settle)  # room for a late duplicate to show up
        return self.report()

    def published(self) -> dict[str, list[tuple[Identity, str]]]:
        r = self.collector.records
        emails = {lead.email: lead.lead_id for lead in self.leads}
        out: dict[str, list[tuple[Identity, str]]] = {
            "interaction": _pairs(r[TopicName.INTERACTIONS], lambda v: (v["event_id"], v["event_id"])),
            "enriched": _pairs(
                # a record with `completes` is a late firmographics answer for earlier records
                [v for v in r[TopicName.ENRICHED] if not v.get("completes")],
                lambda v: (v["interaction"]["event_id"], v["event_id"]),
            ),
            "stage change": _pairs(
                r[TopicName.STAGE_CHANGES],
                lambda v: ((v["lead_id"], v["kind"], v["from_stage"], v["to_stage"]), v["event_id"]),
            ),
            "hand-off": _pairs(r[TopicName.HANDOFFS], lambda v: (v["lead_id"], v["handoff_id"])),
            "outbox": _pairs(
                r[TopicName.NURTURE_OUTBOX],
                lambda v: ((v["lead_id"], v["sequence"], v["step"]), v["event_id"]),
            ),
        }
        deliveries = [command for command, recipient in self.mailbox() if recipient in emails]
        out["e-mail"] = [(self.commands.get(c, ("?", c)), f"delivery-{n}") for n, c in enumerate(deliveries)]
        leads = {lead.lead_id for lead in self.leads}
        out["CRM post"] = [(lead_id, handoff) for lead_id, handoff in self.crm() if lead_id in leads]
        return out

    def report(self) -> Report:
        published = self.published()
        return Report(
            self.label,
            leads=len(self.leads),
            events_sent=self.events,
            events_accepted=self.sender.accepted,
            answers=self.sender.answers,
            effects=[tally(name, self.expected[name], published[name]) for name in EFFECTS],
            timings=dict(self.timings),
            notes=list(self.notes),
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        return list(self.collector.records[TopicName.DLQ])


def _pairs(
    records: list[dict[str, Any]], pick: Callable[[dict[str, Any]], tuple[Identity, str]]
) -> list[tuple[Identity, str]]:
    """(identity, id) of each record that has the fields (poison records written by tests do not)."""
    out = []
    for value in records:
        try:
            out.append(pick(value))
        except (KeyError, TypeError):
            continue
    return out
