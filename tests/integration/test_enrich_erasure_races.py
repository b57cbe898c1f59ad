"""Enrich's inbox records against an erasure, on the real broker: a record about an erased lead that
was in flight when the erasure ran (an alias request, a merge, a late firmographics answer) must not
bring the lead back, and an erasure reaches the anonymous leads still on their way to being merged."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from schemas import PrivacyRecord, PrivacyRequestKind, TopicName
from schemas.base import utcnow
from schemas.enriched import AliasRequest, EnrichedInteraction, FirmographicsResolved, ProfileMerge
from schemas.interaction import Interaction
from schemas.profile import Firmographics, LeadProfile
from services.capture.domain import lead_identity
from services.devstack.broker import EmbeddedBroker
from services.enrich.agents import INBOX
from services.runtime.codec import encode
from services.runtime.stream_app import StreamService
from tests.eventually import eventually
from tests.integration.test_privacy_enrich import interaction, privacy_records, rows
from tests.kafka import consume_until, produce

pytestmark = pytest.mark.integration


def dropped(enrich: StreamService) -> float:
    value = enrich.metrics.registry.get_sample_value(
        "leadpipe_privacy_stale_records_dropped_total", {"service": "enrich"}
    )
    return value or 0.0


def state(enrich: StreamService, lead_id: str) -> str:
    leads: Any = enrich.app.tables["enrich-leads"]
    return (leads.get(lead_id) or b"").decode()


async def erase(
    broker: EmbeddedBroker, enrich: StreamService, *lead_ids: str, requested_by: str = "admin"
) -> PrivacyRecord:
    """Erase `lead_ids[0]`; wait until enrich completed the erasure of every one of `lead_ids`."""
    request = PrivacyRecord(
        event_id=f"erase-{lead_ids[0]}",
        occurred_at=utcnow(),
        lead_id=lead_ids[0],
        kind=PrivacyRequestKind.ERASE,
        requested_by=requested_by,
    )
    topic = enrich.settings.topic(TopicName.PRIVACY)
    await produce(broker.bootstrap_servers, topic, [(lead_ids[0].encode(), encode(request))])

    def completed(records: list[PrivacyRecord]) -> bool:
        done = {r.lead_id for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED}
        return done >= set(lead_ids)

    await privacy_records(broker, enrich, completed)
    return request


async def test_inbox_records_in_flight_during_an_erasure_do_not_bring_the_lead_back(
    broker: EmbeddedBroker, enrich: StreamService
) -> None:
    email, anon = "race.person@example.org", "anon-race-1"
    known, _ = lead_identity(email, None)
    anonymous, _ = lead_identity(None, anon)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    start = utcnow() - timedelta(minutes=5)
    chat = interaction(
        event_id="chat-1",
        type="chat_started",
        occurred_at=start,
        anonymous_id=anon,
        contact={"first_name": "Jane", "phone": "+49 170 1234567"},
    )
    form_at = start + timedelta(minutes=1)
    form = interaction(
        event_id="form-1",
        type="form_submit",
        occurred_at=form_at,
        anonymous_id=anon,
        contact={"email": email},
    )
    await produce(broker.bootstrap_servers, source, [chat])
    await eventually(lambda: bool(state(enrich, anonymous)))
    await produce(broker.bootstrap_servers, source, [form])
    await eventually(lambda: f'"merged":["{anonymous}"]' in state(enrich, known))
    erasure = await erase(broker, enrich, known, anonymous)
    assert rows(enrich, known) == {} and rows(enrich, anonymous) == {}

    # What was on the inbox when the erasure ran: the alias request, the merge it answers with the
    # chat's name and phone, a late firmographics answer (each happened before the erasure).
    history = [Interaction.model_validate_json(chat[1])]
    records: list[tuple[str, Any]] = [
        (
            anonymous,
            AliasRequest(event_id="alias-late", occurred_at=form_at, lead_id=anonymous, target_lead_id=known),
        ),
        (
            known,
            ProfileMerge(
                event_id="merge-late",
                occurred_at=form_at,
                lead_id=known,
                from_lead_id=anonymous,
                profile=LeadProfile(lead_id=anonymous, first_name="Jane", phone="+491701234567"),
                history=history,
            ),
        ),
        (
            known,
            FirmographicsResolved(
                event_id="resolved-late",
                occurred_at=erasure.occurred_at - timedelta(seconds=1),
                lead_id=known,
                domain="example.org",
                firmographics=Firmographics(company_name="Example", domain="example.org"),
            ),
        ),
    ]
    inbox = enrich.settings.topic(INBOX)
    await produce(broker.bootstrap_servers, inbox, [(key.encode(), encode(r)) for key, r in records])
    await eventually(lambda: dropped(enrich) >= 3, within=30)

    assert rows(enrich, known) == {} and rows(enrich, anonymous) == {}
    sink = enrich.settings.topic(TopicName.ENRICHED)
    published = await consume_until(broker.bootstrap_servers, sink, lambda rs: False, within=2)
    replays = [EnrichedInteraction.model_validate_json(r.value) for r in published]
    assert [r.event_id for r in replays if r.replay_of == anonymous] == ["chat-1"]  # the merge, once


async def test_an_erasure_reaches_an_anonymous_lead_whose_merge_has_not_arrived(
    broker: EmbeddedBroker, enrich: StreamService
) -> None:
    """The retention sweep erased the visitor's anonymous history; a form from before that erasure
    arrives late naming the anonymous id. Its alias request is dropped, so the known lead waits for
    a merge that never comes, and must still take the anonymous lead (what came after) with it when
    erased. (After an erasure the person asked for, the late form's known lead goes at once: the
    last test.)"""
    email, anon = "late.form@example.org", "anon-late-1"
    known, _ = lead_identity(email, None)
    anonymous, _ = lead_identity(None, anon)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    start: datetime = utcnow() - timedelta(minutes=5)
    chat = interaction(
        event_id="chat-2",
        type="chat_started",
        occurred_at=start,
        anonymous_id=anon,
        contact={"first_name": "Li"},
    )
    await produce(broker.bootstrap_servers, source, [chat])
    await eventually(lambda: bool(state(enrich, anonymous)))
    await erase(broker, enrich, anonymous, requested_by="retention")

    late = interaction(
        event_id="form-2",
        type="form_submit",
        occurred_at=start + timedelta(minutes=1),
        anonymous_id=anon,
        contact={"email": email},
    )
    await produce(broker.bootstrap_servers, source, [late])
    await eventually(lambda: dropped(enrich) >= 1, within=30)
    assert f'"aliasing":["{anonymous}"]' in state(enrich, known)
    assert rows(enrich, anonymous) == {}

    await erase(broker, enrich, known)
    records = await privacy_records(
        broker,
        enrich,
        lambda rs: any(r.kind is PrivacyRequestKind.ERASE and r.requested_by == "cascade" for r in rs),
    )
    cascade = [r for r in records if r.kind is PrivacyRequestKind.ERASE and r.requested_by == "cascade"]
    assert [r.lead_id for r in cascade] == [anonymous]
    done = next(r for r in records if r.kind is PrivacyRequestKind.ERASURE_COMPLETED and r.lead_id == known)
    assert done.erased["merged_leads"] == 1
    assert rows(enrich, known) == {}


async def test_erasing_the_second_person_of_a_shared_browser_leaves_the_first_person_s_browsing(
    broker: EmbeddedBroker, enrich: StreamService
) -> None:
    """The browser's anonymous lead became the first person who filled in a form there; the second
    is refused it and stops waiting for its merge, so erasing the second erases only them."""
    anon = "anon-shared-1"
    anonymous, _ = lead_identity(None, anon)
    first, _ = lead_identity("first.person@example.org", None)
    second, _ = lead_identity("second.person@example.org", None)
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    start = utcnow() - timedelta(minutes=5)
    view = interaction(event_id="view-1", type="page_view", occurred_at=start, anonymous_id=anon)
    await produce(broker.bootstrap_servers, source, [view])
    await eventually(lambda: bool(state(enrich, anonymous)))
    for n, who in enumerate(("first.person@example.org", "second.person@example.org"), 1):
        form = interaction(
            event_id=f"form-{n}",
            type="form_submit",
            occurred_at=start + timedelta(seconds=n),
            anonymous_id=anon,
            contact={"email": who},
        )
        await produce(broker.bootstrap_servers, source, [form])
        await eventually(lambda: anonymous in state(enrich, first))
    await eventually(lambda: bool(state(enrich, second)) and anonymous not in state(enrich, second))
    assert '"alias_to":"' + first in state(enrich, anonymous).replace(" ", "")
    conflicts = enrich.metrics.registry.get_sample_value("leadpipe_enrich_alias_conflicts_total")
    assert conflicts == 1

    await erase(broker, enrich, second)
    assert state(enrich, second) == ""
    assert first in state(enrich, anonymous)  # the first person's browsing is still theirs


async def test_a_contact_identifying_an_anonymous_lead_the_person_had_erased_takes_its_known_lead_along(
    broker: EmbeddedBroker, enrich: StreamService
) -> None:
    """LinkedIn's DELETED erased the form response's anonymous lead while capture was still fetching
    its contact; the contact (dated at the form's submission) came after. Had it come first, the
    erasure would have taken the known lead it made (`domain.became`), so it goes now. After the
    retention sweep's erasure of a quiet anonymous lead, the known lead a late contact names stays."""
    people = {
        "linkedin": ("deleted.late@example.org", "linkedin:urn:li:leadGenFormResponse:late-1"),
        "retention": ("kept.late@example.org", "linkedin:urn:li:leadGenFormResponse:late-2"),
    }
    ids = {
        by: (lead_identity(email, None)[0], lead_identity(None, anon)[0])
        for by, (email, anon) in people.items()
    }
    source = enrich.settings.topic(TopicName.INTERACTIONS)
    submitted = utcnow() - timedelta(minutes=5)
    for n, (_, anon) in enumerate(people.values()):
        ad = interaction(event_id=f"li-ad-{n}", type="ad_lead", occurred_at=submitted, anonymous_id=anon)
        await produce(broker.bootstrap_servers, source, [ad])
    for _, anonymous in ids.values():
        await eventually(lambda a=anonymous: bool(state(enrich, a)))
    for by, (_, anonymous) in ids.items():
        await erase(broker, enrich, anonymous, requested_by=by)

    for n, (email, anon) in enumerate(people.values()):
        contact = interaction(
            event_id=f"li-contact-{n}",
            type="identify",
            occurred_at=submitted,
            anonymous_id=anon,
            contact={"email": email, "first_name": "Late", "phone": "+49 170 7654321"},
        )
        await produce(broker.bootstrap_servers, source, [contact])
    await eventually(lambda: dropped(enrich) >= 2, within=30)  # both alias requests came too late

    (deleted, deleted_anonymous), (kept, kept_anonymous) = ids["linkedin"], ids["retention"]
    topic = enrich.settings.topic(TopicName.PRIVACY)
    found = await consume_until(
        broker.bootstrap_servers,
        topic,
        lambda rs: any(b'"erasure_completed"' in (r.value or b"") and r.key == deleted.encode() for r in rs),
        within=20,
    )
    assert state(enrich, deleted) == ""  # the person's name, e-mail and phone are gone with it
    assert rows(enrich, deleted) == {} and rows(enrich, deleted_anonymous) == {}
    records = [PrivacyRecord.model_validate_json(r.value) for r in found if r.value]
    erasures = [r for r in records if r.kind is PrivacyRequestKind.ERASE and r.lead_id == deleted]
    assert [(r.requested_by, r.reason) for r in erasures] == [
        ("cascade", "identified by a record from before its anonymous lead's erasure at the person's request")
    ]
    late = enrich.metrics.registry.get_sample_value("leadpipe_enrich_late_identifications_erased_total")
    assert late == 1
    assert "kept.late@example.org" in state(enrich, kept)
    assert f'"aliasing":["{kept_anonymous}"]' in state(enrich, kept)
    assert kept not in {r.lead_id for r in records if r.kind is PrivacyRequestKind.ERASE}
