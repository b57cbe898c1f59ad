"""DSGVO double opt-in: consent records with proof, and the consent proof kept (pseudonymised after
erasure) for the legally required period. Pure. The signed, expiring confirmation tokens are in
services/runtime/consent_tokens.py: nurture's mailer makes them, capture's confirmation page reads
them."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.interaction import Interaction
from schemas.privacy import IMPORTED_CONSENT, PrivacyRecord, PrivacyRequestKind
from services.capture.domain import EVENT_ID_MAX
from services.runtime.consent_tokens import ConsentClaim, token_id

IMPORT_LINE = "import_line"  # the property `leadpipe import` gives each row (services/capture/importer.py)


def consent_record_id(event_id: str) -> str:
    """`<event id>-consent` while it fits the envelope, else a digest of the event id: a sender's id
    may be as long as the envelope allows. Either way a retried event gives the same id, so its consent
    record is deduplicated too; the digest form never ends in "-consent", so the two never collide."""
    readable = f"{event_id}-consent"
    if len(readable) <= EVENT_ID_MAX:
        return readable
    return "consent-" + hashlib.blake2b(event_id.encode(), digest_size=12).hexdigest()


def consent_source(interaction: Interaction) -> str:
    """Where the consent was given: the channel, prefixed `import:` for a row of a list import
    (`leadpipe import` marks each with `import_line`). Nurture lets no imported consent lift an
    unsubscribe, as HubSpot and Mailchimp refuse it: its time is the import's, not the person's."""
    channel = interaction.source.channel or "web"
    return IMPORTED_CONSENT + channel if IMPORT_LINE in interaction.properties else channel


def consent_given(interaction: Interaction, *, ip_hash: str | None = None) -> PrivacyRecord | None:
    """The pending consent an interaction grants, with its proof; None when it grants none.

    `ip_hash` is `hash_ip(client address, salt)` when the caller knows the address."""
    if interaction.consent.marketing_email is not True:
        return None
    return PrivacyRecord(
        event_id=consent_record_id(interaction.event_id),
        occurred_at=interaction.occurred_at,
        lead_id=interaction.lead_id,
        kind=PrivacyRequestKind.CONSENT_GIVEN,
        requested_by="data-subject",
        reason="pending double opt-in",
        consent_text_version=interaction.consent.text_version or "unversioned",
        consent_source=consent_source(interaction),
        ip_hash=ip_hash,
    )


def consent_confirmed(
    claim: ConsentClaim, token: str, now: datetime, *, ip_hash: str | None = None
) -> PrivacyRecord:
    return PrivacyRecord(
        event_id=f"consent-confirmed-{token_id(token)}",
        occurred_at=now.astimezone(UTC),
        lead_id=claim.lead_id,
        kind=PrivacyRequestKind.CONSENT_CONFIRMED,
        requested_by="data-subject",
        consent_text_version=claim.text_version,
        consent_source="double_opt_in_link",
        ip_hash=ip_hash,
        link_expires_at=datetime.fromtimestamp(claim.expires, UTC),
    )


def consent_withdrawn(
    lead_id: str,
    source: str,
    now: datetime,
    event_id: str,
    text_version: str | None = None,
    *,
    ip_hash: str | None = None,
) -> PrivacyRecord:
    return PrivacyRecord(
        event_id=event_id,
        occurred_at=now.astimezone(UTC),
        lead_id=lead_id,
        kind=PrivacyRequestKind.CONSENT_WITHDRAWN,
        requested_by="data-subject",
        consent_text_version=text_version,
        consent_source=source,
        ip_hash=ip_hash,
    )


# --- consent proof --------------------------------------------------------------------------------
#
# The proof that a lead agreed (GDPR Art. 7(1)): when consent was given and confirmed (double opt-in)
# or withdrawn, to which text version, where, and a salted hash of the client address. It is kept
# apart from the lead's other data and outlives an erasure for the period claims can be brought
# (config/privacy.yaml): erasing it would leave leadpipe unable to show that mail it sent was
# wanted. On erasure it is pseudonymised instead: the lead id (a plain digest of the e-mail, so
# anyone holding the address can find it) is dropped, and only the salted subject hash remains,
# which matches again only with the e-mail and the secret salt. See docs/privacy.md.

PROOF_KINDS = frozenset(
    {
        PrivacyRequestKind.CONSENT_GIVEN,
        PrivacyRequestKind.CONSENT_CONFIRMED,
        PrivacyRequestKind.CONSENT_WITHDRAWN,
    }
)


class ConsentEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: PrivacyRequestKind
    event_id: str
    at: AwareDatetime
    text_version: str | None = None
    source: str | None = None
    ip_hash: str | None = None


class ConsentProof(BaseModel):
    """One subject's consent history; `lead_id` is None once the lead was erased."""

    model_config = ConfigDict(frozen=True)

    subject: str = Field(description="Salted hash of the lead id: the proof's key, also after erasure.")
    lead_id: str | None = None
    events: tuple[ConsentEvent, ...] = ()
    pseudonymised_at: AwareDatetime | None = None


def salted_hash(value: str, salt: str) -> str:
    """HMAC-SHA256: without the secret salt a hash cannot be recomputed from a guessed value."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()[:40]


def subject_of(lead_id: str, salt: str) -> str:
    return salted_hash(f"lead|{lead_id}", salt)


def hash_ip(address: str | None, salt: str) -> str | None:
    """What the proof keeps of a client address: enough to match it later, not to read it."""
    return salted_hash(f"ip|{address}", salt) if address else None


def record_consent(proof: ConsentProof | None, record: PrivacyRecord, salt: str) -> ConsentProof:
    """Add a consent record to the subject's proof (once per event id); a new consent after an
    erasure names the lead again, since the person is back."""
    current = proof or ConsentProof(subject=subject_of(record.lead_id, salt))
    if record.kind not in PROOF_KINDS or any(e.event_id == record.event_id for e in current.events):
        return current
    event = ConsentEvent(
        kind=record.kind,
        event_id=record.event_id,
        at=record.occurred_at,
        text_version=record.consent_text_version,
        source=record.consent_source,
        ip_hash=record.ip_hash,
    )
    events = tuple(sorted((*current.events, event), key=lambda e: e.at))
    return current.model_copy(update={"events": events, "lead_id": record.lead_id})


def pseudonymise(proof: ConsentProof, now: datetime) -> ConsentProof:
    """The proof without the lead id (idempotent: the first erasure time is kept)."""
    return proof.model_copy(update={"lead_id": None, "pseudonymised_at": proof.pseudonymised_at or now})
