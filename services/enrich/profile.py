"""Progressive profiling: the newest non-empty value of each field wins, with its source and time.

Pure functions over `LeadProfile`. A later empty value never erases a known one; an older value
(an event that arrives late) only fills a field that is still empty. A stand-in (a country guessed
from the phone number) is the exception: any value the person stated wins over it, whatever the
times, and it never replaces a stated one.
"""

from __future__ import annotations

from typing import Any

from schemas.interaction import Interaction
from schemas.profile import EmailKind, FieldSource, Firmographics, LeadProfile
from services.enrich.config import EnrichConfig
from services.enrich.normalise import (
    classify_title,
    domain_matches,
    normalise_country,
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_text,
)

TRACKED = ("email", "first_name", "last_name", "phone", "company", "job_title", "country", "timezone")
TRACKED_ALL = (*TRACKED, "firmographics")


_NO_FIRMOGRAPHICS = Firmographics()

STAND_IN = "phone:"  # `FieldSource.source` prefix of a country guessed from the phone: "phone:form_submit"


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, Firmographics) and value == _NO_FIRMOGRAPHICS)


def is_stand_in(source: FieldSource) -> bool:
    return source.source.startswith(STAND_IN)


def _replaces(source: FieldSource, known: FieldSource) -> bool:
    """Does a value from `source` replace one from `known`? A stated value beats a stand-in whatever
    their times; between two of a kind, the newer wins."""
    if is_stand_in(source) != is_stand_in(known):
        return is_stand_in(known)
    return source.updated_at >= known.updated_at


def apply_values(profile: LeadProfile, values: dict[str, Any], source: FieldSource) -> LeadProfile:
    """Set each non-empty value unless the field already holds a newer one (or a stated one, when
    `source` is a stand-in's)."""
    updates: dict[str, Any] = {}
    sources = dict(profile.field_sources)
    for name, value in values.items():
        if _empty(value):
            continue
        known = sources.get(name)
        current = getattr(profile, name)
        if _empty(current) or known is None or _replaces(source, known):
            updates[name] = value
            sources[name] = source
    if not updates:
        return profile
    return profile.model_copy(update={**updates, "field_sources": sources})


def contact_values(interaction: Interaction, profile: LeadProfile, config: EnrichConfig) -> dict[str, Any]:
    """The clean values an interaction's contact block offers (None where nothing usable)."""
    contact = interaction.contact
    email = normalise_email(contact.email)
    country = normalise_country(contact.country, config.country_aliases)
    region = country or profile.country or config.default_phone_region
    phone = normalise_phone(contact.phone, region)
    values: dict[str, Any] = {
        "email": email.address if email and email.kind is not EmailKind.INVALID else None,
        "first_name": normalise_name(contact.first_name),
        "last_name": normalise_name(contact.last_name),
        "phone": phone.e164 if phone else None,
        "company": normalise_text(contact.company),
        "job_title": normalise_text(contact.job_title),
        "country": country,
        "timezone": phone.timezone if phone else None,
    }
    return values


def phone_country(values: dict[str, Any]) -> str | None:
    """The country of the phone number among `contact_values`, when they name no country: it stands
    in until the person says otherwise (`apply_values` stores it under a `STAND_IN` source)."""
    if values["country"] is not None or values["phone"] is None:
        return None
    phone = normalise_phone(values["phone"])  # E.164 (memoised like every raw number)
    return phone.region if phone else None


def source_of(interaction: Interaction, *, stand_in: bool = False) -> FieldSource:
    kind = str(interaction.type)
    return FieldSource(
        source=STAND_IN + kind if stand_in else kind,
        event_id=interaction.event_id,
        updated_at=interaction.occurred_at,
    )


def derive(profile: LeadProfile, config: EnrichConfig) -> LeadProfile:
    """Recompute what follows from the stored fields: e-mail kind, seniority, department, flags."""
    email = normalise_email(profile.email)
    domain = email.domain if email else None
    title = classify_title(profile.job_title, config)
    derived = {
        "email_kind": email.kind if email else EmailKind.UNKNOWN,
        "seniority": str(title.seniority) if title.seniority else None,
        "department": title.department,
        "is_competitor": domain_matches(domain, config.competitor_domains),
        "is_customer": domain_matches(domain, config.customer_domains),
    }
    if all(getattr(profile, name) == value for name, value in derived.items()):
        return profile
    return profile.model_copy(update=derived)


def company_domain(profile: LeadProfile) -> str | None:
    """The domain to look firmographics up by: a business e-mail's domain only."""
    return business_domain(profile.email)


def contact_domain(interaction: Interaction) -> str | None:
    """The domain a lookup for this interaction's own contact would be for (`company_domain` of the
    profile it gives its lead), before any state is read: what a batch can look up ahead."""
    return business_domain(interaction.contact.email)


def business_domain(address: str | None) -> str | None:
    email = normalise_email(address)
    if email is None or email.kind is not EmailKind.BUSINESS:
        return None
    return email.domain


def apply_interaction(profile: LeadProfile, interaction: Interaction, config: EnrichConfig) -> LeadProfile:
    values = contact_values(interaction, profile, config)
    updated = apply_values(profile, values, source_of(interaction))
    guessed = phone_country(values)
    if guessed is not None:
        updated = apply_values(updated, {"country": guessed}, source_of(interaction, stand_in=True))
    if interaction.anonymous_id and interaction.anonymous_id not in updated.anonymous_ids:
        updated = updated.model_copy(
            update={"anonymous_ids": [*updated.anonymous_ids, interaction.anonymous_id]}
        )
    return derive(updated, config)


def merge_profiles(into: LeadProfile, other: LeadProfile, config: EnrichConfig) -> LeadProfile:
    """Fold `other` (an anonymous lead's profile) into `into`, field by field, newest non-empty wins."""
    merged = into
    for name in TRACKED_ALL:
        value = getattr(other, name)
        source = other.field_sources.get(name)
        if _empty(value) or source is None:
            continue
        merged = apply_values(merged, {name: value}, source)
    ids = list(dict.fromkeys([*merged.anonymous_ids, *other.anonymous_ids]))
    if ids != merged.anonymous_ids:
        merged = merged.model_copy(update={"anonymous_ids": ids})
    return derive(merged, config)
