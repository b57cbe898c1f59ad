"""Enrich's pure rules: progressive profiling, identity resolution, merges, dedupe, partial enrichment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.enriched import EnrichmentStatus, FirmographicsResolved
from schemas.interaction import Interaction, InteractionIn
from schemas.profile import Firmographics, LeadProfile
from services.capture.domain import lead_identity, to_interaction
from services.enrich import domain
from services.enrich.config import ConfigError, load_config
from services.enrich.domain import LeadState, Lookup, LookupStatus
from services.enrich.profile import TRACKED, apply_interaction, contact_domain, merge_profiles
from services.runtime.codec import encode
from tests.model_tree import none_values_not_defaulting_to_none

CONFIG = load_config()
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
ACME = Firmographics(company_name="Acme GmbH", domain="acme.de", employee_range="51-200", industry="Software")


def interaction(event_id: str, minutes: int = 0, **fields: Any) -> Interaction:
    fields.setdefault("type", "page_view")
    fields["occurred_at"] = T0 + timedelta(minutes=minutes)
    return to_interaction(InteractionIn.model_validate({"event_id": event_id, **fields}), received_at=T0)


def found(company_domain: str = "acme.de") -> Lookup:
    return Lookup(company_domain, LookupStatus.FOUND, ACME)


# --- progressive profiling -------------------------------------------------------------------------

names = st.one_of(st.none(), st.just(""), st.sampled_from(["Ann", "Bea", "Cem", "Dana"]))
titles = st.one_of(st.none(), st.sampled_from(["CEO", "VP Sales", "Engineer", "Student"]))
contacts = st.fixed_dictionaries(
    {
        "first_name": names,
        "last_name": names,
        "job_title": titles,
        "company": names,
        "country": st.sampled_from([None, "DE", "France"]),
    }
)


@settings(max_examples=60)
@given(
    st.lists(st.tuples(contacts, st.integers(0, 10_000)), min_size=1, max_size=8, unique_by=lambda c: c[1])
)
def test_newest_non_empty_value_wins_whatever_the_arrival_order(
    steps: list[tuple[dict[str, Any], int]],
) -> None:
    events = [
        interaction(f"ev-{i}", minute, anonymous_id="anon-1", contact=contact)
        for i, (contact, minute) in enumerate(steps)
    ]
    forward = LeadProfile(lead_id="a-1")
    backward = LeadProfile(lead_id="a-1")
    for event in events:
        forward = apply_interaction(forward, event, CONFIG)
    for event in reversed(events):
        backward = apply_interaction(backward, event, CONFIG)
    newest_first = sorted(events, key=lambda e: e.occurred_at, reverse=True)
    for field in ("first_name", "last_name", "job_title", "company"):
        expected = next((getattr(e.contact, field) for e in newest_first if getattr(e.contact, field)), None)
        assert getattr(forward, field) == getattr(backward, field) == expected
        if expected is not None:
            source = forward.field_sources[field]
            owner = next(e for e in newest_first if getattr(e.contact, field))
            assert (source.event_id, source.updated_at) == (owner.event_id, owner.occurred_at)


@given(st.lists(contacts, min_size=1, max_size=8))
def test_a_later_empty_value_never_erases_a_known_one(steps: list[dict[str, Any]]) -> None:
    profile = LeadProfile(lead_id="a-1")
    for minute, contact in enumerate(steps):
        before = {f: getattr(profile, f) for f in TRACKED}
        profile = apply_interaction(
            profile, interaction(f"e{minute}", minute, anonymous_id="x", contact=contact), CONFIG
        )
        for field, value in before.items():
            if value:
                assert getattr(profile, field), field


def test_derived_fields_follow_the_stored_values() -> None:
    event = interaction(
        "f",
        type="form_submit",
        contact={
            "email": "cto@rivalfunnel.com",
            "job_title": "CTO",
            "phone": "030 1234567",
            "country": "germany",
        },
    )
    profile = apply_interaction(LeadProfile(lead_id=event.lead_id), event, CONFIG)
    assert (profile.seniority, profile.department) == ("c_level", "engineering")
    assert profile.email_kind == "business"
    assert profile.is_competitor and not profile.is_customer
    assert (profile.phone, profile.country, profile.timezone) == ("+49301234567", "DE", "Europe/Berlin")


def test_phone_country_fills_an_unknown_country_only() -> None:
    event = interaction("f", type="form_submit", contact={"email": "a@acme.de", "phone": "+33 1 42 68 53 00"})
    assert apply_interaction(LeadProfile(lead_id="x"), event, CONFIG).country == "FR"


PHONES = {"GB": "+44 7400 123456", "FR": "+33 1 42 68 53 00", "US": "+1 650 253 0000"}


@settings(max_examples=80)
@given(
    st.lists(
        st.tuples(st.sampled_from([None, "DE", "ES"]), st.sampled_from([None, *PHONES])),
        min_size=1,
        max_size=6,
    ),
    st.permutations(range(6)),
)
def test_a_stated_country_beats_the_phones_whatever_the_order_of_arrival(
    steps: list[tuple[str | None, str | None]], order: list[int]
) -> None:
    """The phone's country stands in only until the person names one: the newest country stated,
    else the newest phone's, whichever order the events arrive in."""
    events = [
        interaction(
            f"ev-{i}",
            i,
            anonymous_id="anon-1",
            contact={"country": country, "phone": PHONES[phone] if phone else None},
        )
        for i, (country, phone) in enumerate(steps)
    ]
    stated = [country for country, _ in steps if country]
    phoned = [phone for _, phone in steps if phone]
    expected = stated[-1] if stated else (phoned[-1] if phoned else None)
    profile = LeadProfile(lead_id="a-1")
    for index in (i for i in order if i < len(events)):
        profile = apply_interaction(profile, events[index], CONFIG)
    assert profile.country == expected


def test_a_country_stated_anonymously_beats_the_phone_of_a_later_form_after_the_merge() -> None:
    chat = interaction("chat", 0, type="chat_started", anonymous_id="anon-9", contact={"country": "Germany"})
    anonymous = domain.enrich(None, chat.lead_id, chat, None, CONFIG).state
    form = interaction(
        "form",
        5,
        type="form_submit",
        anonymous_id="anon-9",
        contact={"email": "jana@acme.de", "phone": PHONES["GB"]},
    )
    known = domain.enrich(None, form.lead_id, form, found(), CONFIG)
    assert known.state.profile.country == "GB"  # standing in
    merge = domain.alias(anonymous, known.aliases[0]).merge
    assert merge is not None
    merged = domain.merge(known.state, merge, CONFIG)
    assert merged is not None
    profile = merged.state.profile
    assert (profile.country, profile.field_sources["country"].event_id) == ("DE", "chat")
    assert profile.phone == "+447400123456"
    # the other way round: the known lead's own stated country is not replaced by the anonymous phone
    into = apply_interaction(
        LeadProfile(lead_id="e-1"),
        interaction("k", 0, contact={"email": "k@acme.de", "country": "ES"}),
        CONFIG,
    )
    other = apply_interaction(
        LeadProfile(lead_id="a-2"),
        interaction("a", 9, anonymous_id="x", contact={"phone": PHONES["US"]}),
        CONFIG,
    )
    assert merge_profiles(into, other, CONFIG).country == "ES"


def test_a_country_typed_by_its_english_name_places_a_national_phone_number() -> None:
    contact = {"email": "a@acme.de", "country": "Turkey", "phone": "0532 123 45 67"}
    event = interaction("f", type="form_submit", contact=contact)
    profile = apply_interaction(LeadProfile(lead_id=event.lead_id), event, CONFIG)
    assert (profile.country, profile.phone) == ("TR", "+905321234567")


@settings(max_examples=60)
@given(contacts, contacts, st.integers(0, 100), st.integers(101, 200))
def test_merge_keeps_the_newest_value_of_each_field(
    old: dict[str, Any], new: dict[str, Any], t_old: int, t_new: int
) -> None:
    anonymous = apply_interaction(
        LeadProfile(lead_id="a-1"), interaction("a", t_old, anonymous_id="anon", contact=old), CONFIG
    )
    known = apply_interaction(
        LeadProfile(lead_id="e-1"), interaction("k", t_new, contact={**new, "email": "k@acme.de"}), CONFIG
    )
    for into, other in ((known, anonymous), (anonymous, known)):
        merged = merge_profiles(into, other, CONFIG)
        assert merged.lead_id == into.lead_id
        for field in ("first_name", "last_name", "job_title", "company"):
            assert getattr(merged, field) == (getattr(known, field) or getattr(anonymous, field))
    assert merge_profiles(known, anonymous, CONFIG).anonymous_ids == ["anon"]


# --- identity resolution -----------------------------------------------------------------------------


def test_events_are_handled_where_their_identity_lives() -> None:
    pv = interaction("pv", anonymous_id="anon-1")
    assert domain.destination(None, pv) is None
    aliased = LeadState.new(pv.lead_id).model_copy(update={"alias_to": "e-known"})
    assert domain.destination(aliased, pv) == "e-known"
    messy = pv.model_copy(
        update={
            "contact": pv.contact.model_copy(update={"email": " Ann@Acme.DE "}),
            "lead_id": "e-not-normalised",
        }
    )
    assert domain.destination(None, messy) == lead_identity("ann@acme.de", None)[0]


def test_an_event_naming_only_its_lead_stays_with_that_lead() -> None:
    """E-mail opens and clicks come back with the signed lead id and no e-mail or anonymous id."""
    known = interaction("pv", contact={"email": "ann@acme.de"})
    click = known.model_copy(
        update={
            "event_id": "click",
            "type": "email_click",
            "contact": known.contact.model_copy(update={"email": None}),
        }
    )
    assert click.anonymous_id is None
    assert domain.resolved_lead_id(click) == known.lead_id
    assert domain.destination(None, click) is None


def test_duplicate_events_are_applied_once() -> None:
    event = interaction("ev-1", type="form_submit", contact={"email": "a@acme.de"})
    first = domain.enrich(None, event.lead_id, event, found(), CONFIG)
    again = domain.enrich(first.state, event.lead_id, event, found(), CONFIG)
    assert len(first.records) == 1 and not first.duplicate
    assert again.duplicate and again.records == [] and again.state == first.state


def test_anonymous_history_moves_to_the_known_lead_once() -> None:
    anon = "anon-7"
    anon_lead = lead_identity(None, anon)[0]
    state_a = None
    for i in range(3):
        view = interaction(f"pv-{i}", i, anonymous_id=anon, contact={"first_name": "Ann"} if i == 0 else {})
        state_a = domain.enrich(state_a, anon_lead, view, None, CONFIG).state
    assert state_a is not None and [i.event_id for i in state_a.history] == ["pv-0", "pv-1", "pv-2"]

    form = interaction(
        "form",
        10,
        type="form_submit",
        anonymous_id=anon,
        contact={"email": "ann@acme.de", "job_title": "VP Sales"},
    )
    known = domain.enrich(None, form.lead_id, form, found(), CONFIG)
    assert [r.lead_id for r in known.aliases] == [anon_lead]
    assert known.aliases[0].target_lead_id == form.lead_id
    assert known.state.aliasing == [anon_lead]
    # asked once: the next event before the merge arrives does not ask again
    click = interaction("click", 11, type="email_click", anonymous_id=anon, contact={"email": "ann@acme.de"})
    waiting = domain.enrich(known.state, form.lead_id, click, None, CONFIG)
    assert waiting.aliases == [] and waiting.state.aliasing == [anon_lead]

    aliased = domain.alias(state_a, known.aliases[0])
    assert aliased.state.alias_to == form.lead_id and aliased.merge is not None
    merged = domain.merge(known.state, aliased.merge, CONFIG)
    assert merged.state.aliasing == []
    assert [r.event_id for r in merged.records] == ["pv-0", "pv-1", "pv-2"]
    assert all(r.lead_id == form.lead_id and r.replay_of == anon_lead for r in merged.records)
    assert [r.merged_from for r in merged.records] == [[anon_lead], [], []]
    assert merged.records[-1].profile.first_name == "Ann"
    assert merged.records[-1].profile.firmographics == ACME
    assert merged.state.profile.anonymous_ids == [anon]

    # at-least-once: the alias request and the merge arrive again; nothing is republished
    again = domain.alias(aliased.state, known.aliases[0])
    assert again.merge is not None
    repeat = domain.merge(merged.state, again.merge, CONFIG)
    assert repeat.records == [] and repeat.duplicate
    # once merged, the known lead stops asking
    later = interaction("form-2", 20, type="form_submit", anonymous_id=anon, contact={"email": "ann@acme.de"})
    assert domain.enrich(merged.state, form.lead_id, later, None, CONFIG).aliases == []


PRODUCER_LIMIT = 1_048_576  # the producer's max_request_size: a larger state or merge is never stored


def test_a_busy_anonymous_lead_stays_storable_and_mergeable() -> None:
    """200 page views of 6.5 KB made a state of 1.24 MB: enrich crashed storing it, on every restart.
    The history keeps the newest views that fit in `max_history_bytes`."""
    anon = "anon-busy"
    anon_lead = lead_identity(None, anon)[0]
    state = None
    for i in range(CONFIG.max_history):
        view = interaction(f"pv-{i}", i, anonymous_id=anon, properties={"blob": "x" * 6_500})
        state = domain.enrich(state, anon_lead, view, None, CONFIG).state
    assert state is not None
    assert len(state.dumps()) < PRODUCER_LIMIT
    kept = [view.event_id for view in state.history]
    assert kept and kept[-1] == f"pv-{CONFIG.max_history - 1}"  # the newest, in order
    assert kept == [f"pv-{i}" for i in range(CONFIG.max_history - len(kept), CONFIG.max_history)]
    assert sum(state.history_sizes) <= CONFIG.max_history_bytes
    form = interaction("form", 999, type="form_submit", anonymous_id=anon, contact={"email": "ann@acme.de"})
    request = domain.enrich(None, form.lead_id, form, found(), CONFIG).aliases[0]
    merge = domain.alias(state, request).merge
    assert merge is not None and len(encode(merge)) < PRODUCER_LIMIT


@settings(max_examples=80)
@given(
    st.lists(st.integers(0, 3_000), min_size=1, max_size=40), st.integers(1, 12), st.integers(1_024, 20_000)
)
def test_the_history_is_the_newest_interactions_that_fit_both_bounds(
    blobs: list[int], most: int, max_bytes: int
) -> None:
    config = CONFIG.model_copy(update={"max_history": most, "max_history_bytes": max_bytes})
    anon_lead = lead_identity(None, "anon-bounds")[0]
    state = None
    views = [
        interaction(f"v-{i}", i, anonymous_id="anon-bounds", properties={"b": "y" * n})
        for i, n in enumerate(blobs)
    ]
    for view in views:
        state = domain.enrich(state, anon_lead, view, None, config).state
    assert state is not None
    fitting = [(view, len(encode(view))) for view in views if len(encode(view)) <= max_bytes]
    sizes = [size for _, size in fitting]
    kept = len(state.history)
    assert [v.event_id for v in state.history] == [v.event_id for v, _ in fitting[len(fitting) - kept :]]
    assert state.history_sizes == sizes[len(sizes) - kept :]
    assert kept <= most and sum(state.history_sizes) <= max_bytes
    if kept < min(most, len(fitting)):  # the next older one would not have fitted
        assert sum(sizes[len(sizes) - kept - 1 :]) > max_bytes


def test_one_interaction_larger_than_the_budget_leaves_the_others_in_the_history() -> None:
    """Kept from the newest end until one did not fit, a single 300 KB page view emptied the history
    of 150 small ones, and the merge then gave the known lead none of that activity."""
    anon_lead = lead_identity(None, "anon-big")[0]
    state = None
    for i in range(150):
        state = domain.enrich(
            state, anon_lead, interaction(f"s-{i}", i, anonymous_id="anon-big"), None, CONFIG
        ).state
    big = interaction("big", 200, anonymous_id="anon-big", properties={"dom": "x" * 300_000})
    state = domain.enrich(state, anon_lead, big, None, CONFIG).state
    assert [v.event_id for v in state.history] == [f"s-{i}" for i in range(150)]


def test_a_history_stored_before_its_sizes_is_measured_once() -> None:
    anon_lead = lead_identity(None, "anon-old")[0]
    views = [interaction(f"o-{i}", i, anonymous_id="anon-old") for i in range(3)]
    stored = LeadState.new(anon_lead).model_copy(update={"history": views[:2]})  # as an older enrich kept it
    state = domain.enrich(stored, anon_lead, views[2], None, CONFIG).state
    assert [v.event_id for v in state.history] == ["o-0", "o-1", "o-2"]
    assert state.history_sizes == [len(encode(view)) for view in views]


def test_a_second_known_lead_cannot_take_an_aliased_anonymous_id_and_stops_waiting_for_it() -> None:
    """A shared browser: the first person keeps the anonymous lead. The second stops waiting for its
    merge, so erasing the second person no longer erases the first person's browsing."""
    state = LeadState.new("a-1").model_copy(update={"alias_to": "e-first"})
    request = interaction("f", type="form_submit", anonymous_id="x", contact={"email": "b@acme.de"})
    outcome = domain.enrich(None, request.lead_id, request, found(), CONFIG)
    second = outcome.state.model_copy(update={"aliasing": ["a-1", "a-other"]})
    answer = domain.alias(state, outcome.aliases[0].model_copy(update={"lead_id": "a-1"}))
    assert answer.merge is None and answer.state.alias_to == "e-first"
    assert answer.refusal is not None
    assert (answer.refusal.lead_id, answer.refusal.from_lead_id) == (request.lead_id, "a-1")
    assert domain.erased_with(second) == ["a-1", "a-other"]
    refused = domain.alias_refused(second, answer.refusal)
    assert refused is not None and refused.aliasing == ["a-other"]
    assert domain.erased_with(refused) == ["a-other"]
    assert domain.alias_refused(refused, answer.refusal) is None  # repeated: nothing to change
    assert domain.alias_refused(None, answer.refusal) is None  # erased since: no state made
    again = domain.alias(answer.state, outcome.aliases[0].model_copy(update={"lead_id": "a-1"}))
    assert again.refusal == answer.refusal  # a repeated request is refused with the same id


def test_a_merge_with_no_history_is_announced_on_the_next_record() -> None:
    form = interaction("form", type="form_submit", anonymous_id="anon", contact={"email": "c@acme.de"})
    known = domain.enrich(None, form.lead_id, form, found(), CONFIG)
    answer = domain.alias(None, known.aliases[0])
    assert answer.merge is not None
    merged = domain.merge(known.state, answer.merge, CONFIG)
    assert merged.records == []
    nxt = domain.enrich(merged.state, form.lead_id, interaction("pv", 5, anonymous_id="anon"), None, CONFIG)
    assert nxt.records[0].merged_from == [known.aliases[0].lead_id]


def test_a_merge_or_late_answer_for_a_lead_with_no_state_creates_none() -> None:
    """The lead was erased while they were in flight: a state made for them would hold the erased
    person's data again, with no activity row for the retention sweep to ever remove it."""
    form = interaction("form", type="form_submit", anonymous_id="anon", contact={"email": "d@acme.de"})
    known = domain.enrich(None, form.lead_id, form, found(), CONFIG)
    answer = domain.alias(None, known.aliases[0])
    assert answer.merge is not None
    assert domain.merge(None, answer.merge, CONFIG) is None
    resolved = FirmographicsResolved(
        event_id="r", occurred_at=T0, lead_id=form.lead_id, domain="acme.de", firmographics=ACME
    )
    assert domain.firmographics_resolved(None, resolved) is None


def test_an_erasure_takes_the_anonymous_leads_merged_and_those_still_merging() -> None:
    """A lead asked to merge whose merge has not arrived yet holds the same person's history: the
    guard drops its merge, so the erasure must reach it directly."""
    state = LeadState.new("e-1").model_copy(update={"merged": ["a-1"], "aliasing": ["a-2", "a-1"]})
    assert domain.erased_with(state) == ["a-1", "a-2"]
    assert domain.erased_with(LeadState.new("e-2")) == []


@pytest.mark.parametrize(
    ("requested_by", "erased"),
    [
        ("linkedin", "e-1"),
        ("data-subject", "e-1"),
        ("admin", "e-1"),
        (None, "e-1"),
        ("retention", None),
        ("cascade", None),
    ],
)
def test_a_person_s_erasure_of_an_anonymous_lead_takes_the_known_lead_it_became(
    requested_by: str | None, erased: str | None
) -> None:
    """Its profile and history live on in the known lead; the retention sweep and a cascade (which
    came from that known lead) do not speak for the person."""
    aliased = LeadState.new("a-1").model_copy(update={"alias_to": "e-1"})
    assert domain.became(aliased, requested_by) == erased
    assert domain.became(LeadState.new("a-2"), requested_by) is None


@pytest.mark.parametrize("requested_by", ["linkedin", "data-subject", "admin", None, "retention", "cascade"])
def test_only_a_person_s_erasure_of_an_anonymous_lead_that_was_nobody_yet_reaches_late_identifications(
    requested_by: str | None,
) -> None:
    """Had the identification come first, the person's erasure would have taken its known lead
    (`became`). One that had become a known lead already took that one, and another known lead's
    identification would have been refused (a shared browser): that person stays."""
    person = requested_by not in ("retention", "cascade")
    unclaimed = LeadState.new("a-1")
    assert domain.identity_follows(unclaimed, "a-1", requested_by) is person
    assert domain.identity_follows(None, "a-1", requested_by) is person  # erased before enrich saw it
    aliased = unclaimed.model_copy(update={"alias_to": "e-1"})
    assert domain.identity_follows(aliased, "a-1", requested_by) is False
    known = LeadState.new("e-2")  # a known lead's erasure: no identity to follow
    assert domain.identity_follows(known, "e-2", requested_by) is False


def test_a_late_identification_of_an_anonymous_lead_the_person_erased_names_its_known_lead() -> None:
    """The LinkedIn contact fetched while the DELETED was handled, dated at the form's submission:
    its alias request reaches the erased anonymous lead after the erasure."""
    contact = interaction(
        "li-contact", type="identify", anonymous_id="linkedin:urn-9", contact={"email": "late@acme.de"}
    )
    known = domain.enrich(None, contact.lead_id, contact, found(), CONFIG)
    (request,) = known.aliases
    at = request.occurred_at.timestamp()
    assert domain.identified_late(request, at) == contact.lead_id  # the erasure came at the same moment
    assert domain.identified_late(request, at + 60) == contact.lead_id
    assert domain.identified_late(request, at - 1) is None  # happened after the erasure: the person came back
    assert domain.identified_late(request, None) is None  # not the person's erasure: dropped, nothing more


def test_a_known_lead_from_other_sources_goes_whole_as_with_became() -> None:
    """The known lead a late identification names may hold the person's data from other sources (a
    website form with the same address): the whole lead goes, as `became` takes the whole lead."""
    site = interaction("web-form", type="form_submit", contact={"email": "late@acme.de", "first_name": "Ann"})
    before = domain.enrich(None, site.lead_id, site, found(), CONFIG).state
    contact = interaction(
        "li-contact", 5, type="identify", anonymous_id="linkedin:urn-9", contact={"email": "late@acme.de"}
    )
    (request,) = domain.enrich(before, site.lead_id, contact, found(), CONFIG).aliases
    aliased = LeadState.new(request.lead_id).model_copy(update={"alias_to": site.lead_id})
    erased = domain.identified_late(request, request.occurred_at.timestamp())
    assert erased == domain.became(aliased, "linkedin") == site.lead_id


# --- firmographics -------------------------------------------------------------------------------------


def test_free_mail_needs_no_lookup_and_is_complete() -> None:
    event = interaction("f", type="form_submit", contact={"email": "ann@gmail.com"})
    assert domain.lookup_needed(None, event.lead_id, event, CONFIG) is None
    outcome = domain.enrich(None, event.lead_id, event, None, CONFIG)
    assert outcome.records[0].enrichment is EnrichmentStatus.COMPLETE


@given(
    st.one_of(
        st.none(),
        st.sampled_from(
            ["ann@acme.de", " Ann@ACME.de ", "bo@gmail.com", "x@mailinator.com", "not-an-address"]
        ),
        st.emails(),
    ),
    st.sampled_from(["form_submit", "page_view", "demo_request"]),
)
def test_a_batch_looks_up_ahead_what_a_new_lead_would_need(email: str | None, kind: str) -> None:
    """`contact_domain` (what a batch looks up before its records are handled) is the domain the
    lookup of a lead with no state yet asks for, from the interaction alone."""
    contact = {"email": email} if email else {}
    try:
        event = interaction("e", type=kind, contact=contact, anonymous_id="anon-1")
    except ValueError:
        return  # capture refuses it at the edge: enrich never sees it
    assert contact_domain(event) == domain.lookup_needed(None, event.lead_id, event, CONFIG)


def test_unavailable_provider_marks_partial_and_a_late_answer_completes() -> None:
    first = interaction("f1", type="form_submit", contact={"email": "ann@acme.de"})
    second = interaction("f2", 1, type="demo_request", contact={"email": "ann@acme.de"})
    assert domain.lookup_needed(None, first.lead_id, first, CONFIG) == "acme.de"
    down = Lookup("acme.de", LookupStatus.UNAVAILABLE)
    one = domain.enrich(None, first.lead_id, first, down, CONFIG)
    assert domain.lookup_needed(one.state, first.lead_id, second, CONFIG) == "acme.de"
    two = domain.enrich(one.state, first.lead_id, second, down, CONFIG)
    assert [r.enrichment for r in (*one.records, *two.records)] == [EnrichmentStatus.PARTIAL] * 2
    assert two.state.pending_domain == "acme.de" and two.state.pending_events == ["f1", "f2"]

    answer = FirmographicsResolved(
        event_id="r", occurred_at=T0, lead_id=first.lead_id, domain="acme.de", firmographics=ACME
    )
    done = domain.firmographics_resolved(two.state, answer)
    (record,) = done.records
    assert record.enrichment is EnrichmentStatus.COMPLETE and record.completes == ["f1", "f2"]
    assert record.event_id == domain.completion_id(["f1", "f2"]) and record.interaction.event_id == "f2"
    assert record.profile.firmographics == ACME and done.state.pending_domain is None
    assert domain.firmographics_resolved(done.state, answer).duplicate  # a repeated answer is ignored
    assert domain.lookup_needed(done.state, first.lead_id, second, CONFIG) is None


def test_a_profile_applied_once_gives_what_applying_it_twice_gave() -> None:
    """The agent passes `applied_profile` to both steps; the answers must not change."""
    first = interaction("f1", type="form_submit", contact={"email": "ann@acme.de", "phone": "030 1234567"})
    second = interaction("f2", 1, type="demo_request", contact={"email": "Ann@ACME.de", "country": "DE"})
    state = None
    for event, lookup in ((first, Lookup("acme.de", LookupStatus.UNAVAILABLE)), (second, found())):
        applied = domain.applied_profile(state, event.lead_id, event, CONFIG)
        wanted = domain.lookup_needed(state, event.lead_id, event, CONFIG)
        assert domain.lookup_needed(state, event.lead_id, event, CONFIG, applied) == wanted == "acme.de"
        plain = domain.enrich(state, event.lead_id, event, lookup, CONFIG)
        assert domain.enrich(state, event.lead_id, event, lookup, CONFIG, applied=applied) == plain
        state = plain.state


def test_a_live_answer_completes_earlier_partial_records() -> None:
    first = interaction("f1", type="form_submit", contact={"email": "ann@acme.de"})
    second = interaction("f2", 1, type="demo_request", contact={"email": "ann@acme.de"})
    one = domain.enrich(None, first.lead_id, first, Lookup("acme.de", LookupStatus.UNAVAILABLE), CONFIG)
    two = domain.enrich(one.state, first.lead_id, second, found(), CONFIG)
    assert two.records[0].enrichment is EnrichmentStatus.COMPLETE and two.records[0].completes == ["f1"]


def test_unknown_company_is_a_complete_answer() -> None:
    event = interaction("f", type="form_submit", contact={"email": "ann@tiny.example"})
    outcome = domain.enrich(
        None, event.lead_id, event, Lookup("tiny.example", LookupStatus.NOT_FOUND), CONFIG
    )
    assert outcome.records[0].enrichment is EnrichmentStatus.COMPLETE
    assert outcome.state.profile.firmographics.domain == "tiny.example"
    assert domain.lookup_needed(outcome.state, event.lead_id, event, CONFIG) is None


# --- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("seniority: [{level: boss, patterns: [x]}]", "seniority.0.level"),
        ("seniority: [{level: vp, patterns: ['(']}]", "invalid regular expression"),
        ("seniority: [{level: vp, patterns: [x]}]\ncountry_aliases: {uk: gbr}", "country_aliases"),
        ("seniority: [{level: vp, patterns: [x]}]\nmax_histroy: 3", "max_histroy"),
        ("seniority: [", "not valid YAML"),
        ("{}", "seniority"),
    ],
)
def test_config_errors_name_file_key_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "enrich.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and problem in str(error.value)


# --- the table's JSON -------------------------------------------------------------------------------


def test_state_fields_that_may_be_none_default_to_none() -> None:
    """`LeadState.dumps` leaves None values out; that loses nothing only while this holds in every
    model the state holds."""
    seen, wrong = none_values_not_defaulting_to_none(LeadState)
    assert seen >= {"LeadState", "LeadProfile", "Interaction", "Contact", "FieldSource", "Firmographics"}
    assert wrong == []


lookups = st.sampled_from(
    [None, found(), Lookup("acme.de", LookupStatus.UNAVAILABLE), Lookup("acme.de", LookupStatus.NOT_FOUND)]
)


@settings(max_examples=60)
@given(st.lists(st.tuples(contacts, st.booleans(), lookups), min_size=1, max_size=6))
def test_any_state_round_trips_through_its_table_json(
    steps: list[tuple[dict[str, Any], bool, Lookup | None]],
) -> None:
    """Anonymous history, a pending lookup, provenance: whatever a state holds loads back equal."""
    states: dict[str, LeadState] = {}
    for minute, (contact, known, lookup) in enumerate(steps):
        email = {"email": "ann@acme.de"} if known else {}
        event = interaction(f"e{minute}", minute, anonymous_id="anon-1", contact={**contact, **email})
        state = domain.enrich(states.get(event.lead_id), event.lead_id, event, lookup, CONFIG).state
        states[event.lead_id] = state
        stored = state.dumps()
        assert b"null" not in stored
        assert LeadState.model_validate_json(stored) == state
