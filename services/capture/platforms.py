"""Ad-platform webhooks: verification and payload mapping for Meta, Google and LinkedIn. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.interaction import Contact, IdentityKind, Interaction, InteractionType, Source
from schemas.privacy import PrivacyRecord, PrivacyRequestKind
from services.capture.domain import clock_ahead_problem, lead_identity, normalise_email
from services.runtime.errors import FieldProblem, field_problems


def _id_digest(platform_id: str) -> str:
    """A platform's lead id inside an event id, at a fixed length: the envelope allows 128 characters
    and a Google lead id may itself have 128, a LinkedIn response URN 256. Same id, same digest, so a
    platform's retry keeps its event id; the readable id stays in the record's properties."""
    return hashlib.blake2b(platform_id.encode(), digest_size=12).hexdigest()


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same_hex(presented: str, expected: str) -> bool:
    """Constant-time, as bytes: `compare_digest` raises TypeError for a str with a non-ASCII character,
    which a header may carry (answered 500 instead of 401)."""
    return hmac.compare_digest(presented.lower().encode("utf-8", "surrogateescape"), expected.encode())


def meta_signature_ok(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>`."""
    if not header or not header.startswith("sha256="):
        return False
    return _same_hex(header.removeprefix("sha256="), _hmac_hex(app_secret, raw_body))


def linkedin_challenge_response(challenge_code: str, client_secret: str) -> str:
    """Hex HMAC-SHA256 of the challenge code with the client secret."""
    return _hmac_hex(client_secret, challenge_code.encode())


def linkedin_signature_ok(raw_body: bytes, header: str | None, client_secret: str) -> bool:
    """`X-LI-Signature`: hex HMAC-SHA256 of "hmacsha256=" + raw body with the client secret, as
    LinkedIn's "Webhook validation" guide (learn.microsoft.com/linkedin/shared/api-guide/
    webhook-validation, "Requirements for Processing Notifications") states it. A header that
    itself carries the `hmacsha256=` prefix, as some receivers' examples show, is taken too."""
    if not header:
        return False
    expected = _hmac_hex(client_secret, b"hmacsha256=" + raw_body)
    return _same_hex(header.removeprefix("hmacsha256="), expected)


def google_key_ok(presented: str | None, configured: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), configured.encode())


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class MetaLeadgen(_Payload):
    leadgen_id: str = Field(min_length=1, max_length=64)
    page_id: str | None = None
    form_id: str | None = None
    ad_id: str | None = None
    adgroup_id: str | None = None
    created_time: int | None = None


class MetaChange(_Payload):
    field: str
    value: dict[str, object]


class MetaEntry(_Payload):
    id: str | None = None
    time: int | None = None
    changes: list[MetaChange] = Field(default_factory=list)


class MetaWebhook(_Payload):
    """`{"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {...}}]}]}`."""

    object: str
    entry: list[MetaEntry]


def meta_leads(payload: MetaWebhook) -> tuple[list[MetaLeadgen], list[FieldProblem]]:
    """The leadgen changes of a page webhook, and what is wrong with those that cannot be read (each
    problem's field is its path in the delivery); other fields and objects are ignored. One change
    that cannot be read no longer refuses the delivery: Meta sent it again whole, with the others."""
    if payload.object != "page":
        return [], []
    leads: list[MetaLeadgen] = []
    problems: list[FieldProblem] = []
    for e, entry in enumerate(payload.entry):
        for c, change in enumerate(entry.changes):
            if change.field != "leadgen":
                continue
            try:
                leads.append(MetaLeadgen.model_validate(_stringify_ids(change.value)))
            except ValidationError as exc:
                problems += field_problems(exc, root=f"entry.{e}.changes.{c}.value", prefix=True)
    return leads, problems


def _stringify_ids(value: Mapping[str, object]) -> dict[str, object]:
    """Meta sends ids as strings, but some tools send numbers; ids are opaque strings to us."""
    return {k: str(v) if k.endswith("_id") and isinstance(v, int) else v for k, v in value.items()}


def platform_time(
    raw: int | None, field: str, received_at: datetime, max_ahead: timedelta | None, *, per_second: int = 1
) -> tuple[datetime, dict[str, object]]:
    """The lead's time from a platform's epoch `raw` (`per_second` units a second: LinkedIn counts
    milliseconds), with the properties that keep what the platform said and why it was not taken.
    None or 0 is the receive time. So is a time more than `max_ahead` after it (None: no limit), or
    past the calendar (milliseconds sent as seconds; `fromtimestamp` raised, the delivery was
    answered 500 and sent again for ever). An ad lead is never refused for a bad field
    (`_ad_contact_event`); refused, it would be lost, as the platform delivers the same time again."""
    if not raw:
        return received_at, {}
    try:
        at = datetime.fromtimestamp(raw / per_second, UTC)
    except (ValueError, OverflowError, OSError):
        problem: str | None = "no date on the calendar (milliseconds sent as seconds?)"
    else:
        problem = None if max_ahead is None else clock_ahead_problem(at, received_at, max_ahead)
        if problem is None:
            return at, {}
    return received_at, {"invalid_fields": {field: raw}, "invalid_reasons": {field: problem}}


def meta_lead_interaction(
    lead: MetaLeadgen, received_at: datetime, *, max_ahead: timedelta | None = None
) -> Interaction:
    """Published at once, before the contact is fetched: the lead id is never lost."""
    anonymous_id = f"meta:{lead.leadgen_id}"
    lead_id, identity = lead_identity(None, anonymous_id)
    ids = {k: v for k, v in lead.model_dump().items() if k.endswith("_id") and v}
    occurred_at, invalid = platform_time(lead.created_time, "created_time", received_at, max_ahead)
    return Interaction(
        event_id=f"meta-lead-{lead.leadgen_id}",
        occurred_at=occurred_at,
        lead_id=lead_id,
        type=InteractionType.AD_LEAD,
        identity=identity,
        anonymous_id=anonymous_id,
        source=Source(channel="meta_ads", utm_source="facebook", utm_medium="paid_social"),
        properties={"platform": "meta", **ids, **invalid},
        received_at=received_at,
    )


# Meta's standard questions (field_data names), in order of preference: as for LinkedIn, a work
# address is preferred to the person's own, which stays among the answers.
META_FIELDS = {
    "work_email": "email",
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "work_phone_number": "phone",
    "phone_number": "phone",
    "company_name": "company",
    "job_title": "job_title",
    "country": "country",
}


def meta_contact_interaction(
    lead: MetaLeadgen,
    field_data: Iterable[Mapping[str, object]],
    received_at: datetime,
    *,
    max_ahead: timedelta | None = None,
) -> Interaction:
    """The identify event linking `meta:<leadgen_id>` to the contact from the Graph API."""
    values: dict[str, str] = {}
    for item in field_data:
        name, answers = item.get("name"), item.get("values")
        if isinstance(name, str) and isinstance(answers, list) and answers:
            values[name] = str(answers[0])
    mapped, extra = _by_preference(values, META_FIELDS)
    full_name = extra.pop("full_name", None)
    if full_name is not None and "first_name" not in mapped:
        mapped.update(_split_name(full_name))
    occurred_at, invalid = platform_time(lead.created_time, "created_time", received_at, max_ahead)
    return _ad_contact_event(
        event_id=f"meta-contact-{lead.leadgen_id}",
        anonymous_id=f"meta:{lead.leadgen_id}",
        mapped=mapped,
        fallbacks=_next_best(extra, META_FIELDS),
        properties={"platform": "meta", "leadgen_id": lead.leadgen_id, "answers": extra, **invalid},
        source=Source(channel="meta_ads", utm_source="facebook", utm_medium="paid_social"),
        interaction_type=InteractionType.IDENTIFY,
        occurred_at=occurred_at,
        received_at=received_at,
    )


def _split_name(full_name: str) -> dict[str, str]:
    first, _, last = full_name.strip().partition(" ")
    return {"first_name": first, **({"last_name": last.strip()} if last.strip() else {})}


def _ad_contact_event(
    *,
    event_id: str,
    anonymous_id: str,
    mapped: dict[str, str],
    properties: dict[str, object],
    source: Source,
    interaction_type: InteractionType,
    occurred_at: datetime,
    received_at: datetime,
    is_test: bool = False,
    fallbacks: dict[str, str] | None = None,
) -> Interaction:
    """An ad lead is never refused for a bad field: unusable values move to properties. A field
    whose preferred answer is unusable takes the next one (`fallbacks`: a mistyped work e-mail
    leaves the personal one, which identifies the lead, rather than an anonymous lead)."""
    try:
        contact = Contact.model_validate(mapped)
    except ValidationError as exc:
        bad = {str(error["loc"][0]) for error in exc.errors()}
        usable = {k: v for k, v in mapped.items() if k not in bad}
        usable |= {k: v for k, v in (fallbacks or {}).items() if k in bad and _usable(k, v)}
        contact = Contact.model_validate(usable)
        given = properties.get("invalid_fields")
        invalid = {**(given if isinstance(given, dict) else {}), **{k: mapped[k] for k in sorted(bad)}}
        properties = {**properties, "invalid_fields": invalid}
    if contact.email:
        contact = contact.model_copy(update={"email": normalise_email(contact.email)})
    lead_id, identity = lead_identity(contact.email, anonymous_id)
    return Interaction(
        event_id=event_id,
        occurred_at=occurred_at,
        lead_id=lead_id,
        type=interaction_type,
        identity=identity,
        anonymous_id=anonymous_id,
        contact=contact,
        source=source,
        properties=properties,
        received_at=received_at,
        is_test=is_test,
    )


def _by_preference(values: dict[str, str], fields: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The contact from a platform's answers (`fields`: answer name -> contact field, in order of
    preference), and the other answers under their own names: those no field takes, and those a
    preferred answer displaced. A blank answer leaves the field to the next one."""
    mapped: dict[str, str] = {}
    extra = {name: value for name, value in values.items() if name not in fields}
    for name, target in fields.items():
        if values.get(name, "").strip():
            if target in mapped:
                extra[name] = values[name]
            else:
                mapped[target] = values[name]
    return mapped, extra


def _next_best(extra: dict[str, str], fields: dict[str, str]) -> dict[str, str]:
    """For each contact field, the most preferred answer that was not chosen (`fields` are in order
    of preference; the ones not chosen are among the answers, under their own names)."""
    best: dict[str, str] = {}
    for name, target in fields.items():
        if extra.get(name, "").strip():
            best.setdefault(target, extra[name])
    return best


def _usable(field: str, value: str) -> bool:
    try:
        Contact.model_validate({field: value})
    except ValidationError:
        return False
    return True


class GoogleColumn(_Payload):
    column_id: str = Field(max_length=128)
    string_value: str | None = Field(None, max_length=4096)
    column_name: str | None = None


class GoogleLead(_Payload):
    """Google Ads lead form webhook body."""

    lead_id: str = Field(min_length=1, max_length=128)
    google_key: str | None = None
    user_column_data: list[GoogleColumn] = Field(default_factory=list, max_length=200)
    api_version: str | None = None
    form_id: int | str | None = None
    campaign_id: int | str | None = None
    adgroup_id: int | str | None = None
    creative_id: int | str | None = None
    gcl_id: str | None = None
    is_test: bool = False


# Google's columns, in order of preference: as for LinkedIn and Meta, a work address is preferred
# to the person's own, which stays among the answers.
GOOGLE_COLUMNS = {
    "WORK_EMAIL": "email",
    "EMAIL": "email",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "WORK_PHONE": "phone",
    "PHONE_NUMBER": "phone",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title",
    "COUNTRY": "country",
}


def google_interaction(lead: GoogleLead, received_at: datetime) -> Interaction:
    given = {c.column_id: c.string_value for c in lead.user_column_data if c.string_value is not None}
    mapped, extra = _by_preference(given, GOOGLE_COLUMNS)
    if "FULL_NAME" in extra and "first_name" not in mapped:
        mapped.update(_split_name(extra.pop("FULL_NAME")))
    ids = {
        k: str(v)
        for k, v in lead.model_dump(
            include={"form_id", "campaign_id", "adgroup_id", "creative_id", "gcl_id"}
        ).items()
        if v is not None
    }
    return _ad_contact_event(
        event_id=f"google-lead-{_id_digest(lead.lead_id)}",
        anonymous_id=f"google:{lead.lead_id}",
        mapped=mapped,
        fallbacks=_next_best(extra, GOOGLE_COLUMNS),
        properties={"platform": "google", "google_lead_id": lead.lead_id, **ids, "answers": extra},
        source=Source(channel="google_ads", utm_source="google", utm_medium="cpc"),
        interaction_type=InteractionType.AD_LEAD,
        occurred_at=received_at,
        received_at=received_at,
        is_test=lead.is_test,
    )


class LinkedInNotification(_Payload):
    """Lead Sync notification: `leadAction` CREATED or DELETED for a form response URN."""

    type: str = "LEAD_ACTION"
    # camelCase as LinkedIn sends it.
    leadGenFormResponse: str = Field(min_length=1, max_length=256)
    leadGenForm: str | None = None
    owner: dict[str, str] = Field(default_factory=dict)
    associatedEntity: dict[str, str] = Field(default_factory=dict)
    leadAction: str
    occuredAt: int | None = None  # sic: LinkedIn's spelling
    leadType: str | None = None


def _linkedin_digest(note: LinkedInNotification) -> str:
    return _id_digest(note.leadGenFormResponse)


def linkedin_record(
    note: LinkedInNotification, received_at: datetime, *, max_ahead: timedelta | None = None
) -> Interaction | PrivacyRecord:
    """CREATED is an ad lead (its answers fetched afterwards, `linkedin_contact_interaction`);
    DELETED is an erasure request. A time more than `max_ahead` after receipt is replaced by the
    receive time (`platform_time`)."""
    anonymous_id = f"linkedin:{note.leadGenFormResponse}"
    lead_id, identity = lead_identity(None, anonymous_id)
    occurred_at, invalid = platform_time(note.occuredAt, "occuredAt", received_at, max_ahead, per_second=1000)
    digest = _linkedin_digest(note)
    if note.leadAction.upper() == "DELETED":
        return PrivacyRecord(
            event_id=f"linkedin-erase-{digest}",
            occurred_at=occurred_at,
            lead_id=lead_id,
            kind=PrivacyRequestKind.ERASE,
            requested_by="linkedin",
            reason="lead deleted on LinkedIn (leadAction DELETED)",
        )
    return Interaction(
        event_id=f"linkedin-lead-{digest}",
        occurred_at=occurred_at,
        lead_id=lead_id,
        type=InteractionType.AD_LEAD,
        identity=identity if identity is IdentityKind.ANONYMOUS else IdentityKind.ANONYMOUS,
        anonymous_id=anonymous_id,
        source=Source(channel="linkedin_ads", utm_source="linkedin", utm_medium="paid_social"),
        properties={
            "platform": "linkedin",
            "lead_action": note.leadAction,
            "form_response_urn": note.leadGenFormResponse,
            **({"form_urn": note.leadGenForm} if note.leadGenForm else {}),
            **({"lead_type": note.leadType} if note.leadType else {}),
            **invalid,
        },
        received_at=received_at,
    )


def linkedin_sender_id(note: LinkedInNotification) -> str:
    return f"linkedin:{note.leadGenFormResponse}:{note.leadAction.upper()}"


def linkedin_response_id(urn: str) -> str:
    """`urn:li:leadGenFormResponse:<id>` -> `<id>`, the key of `GET /leadFormResponses/{id}`."""
    return urn.removeprefix("urn:li:leadGenFormResponse:")


_FORM_ID = re.compile(r"urn:li:leadGenForm:(\d+)")


def linkedin_form_id(*urns: str | None) -> str | None:
    """The form id inside `urn:li:versionedLeadGenForm:(urn:li:leadGenForm:<id>,<version>)` or
    `urn:li:leadGenForm:<id>`, from the first URN that has one."""
    for urn in urns:
        found = _FORM_ID.search(urn or "")
        if found:
            return found.group(1)
    return None


class LinkedInQuestion(_Payload):
    questionId: int | str
    name: str | None = None
    predefinedField: str | None = None
    questionDetails: dict[str, Any] = Field(default_factory=dict)


class LinkedInFormContent(_Payload):
    questions: list[LinkedInQuestion] = Field(default_factory=list)


class LinkedInForm(_Payload):
    """A lead form (`GET /leadForms/{id}`, or projected into a response as `form`)."""

    id: int | str | None = None
    content: LinkedInFormContent | None = None
    hiddenFields: list[dict[str, Any]] = Field(default_factory=list)


class LinkedInAnswer(_Payload):
    questionId: int | str
    answerDetails: dict[str, Any] = Field(default_factory=dict)


class LinkedInFormResponse(_Payload):
    answers: list[LinkedInAnswer] = Field(default_factory=list)
    consentResponses: list[dict[str, Any]] = Field(default_factory=list)


class LinkedInLead(_Payload):
    """A form response (`GET /leadFormResponses/{id}`): answers keyed by question id."""

    id: str | None = None
    submittedAt: int | None = None
    testLead: bool = False
    versionedLeadGenFormUrn: str | None = None
    formResponse: LinkedInFormResponse = Field(default_factory=LinkedInFormResponse)
    form: LinkedInForm | None = None


# LinkedIn's predefined fields; a work address is preferred to the member's own.
LINKEDIN_FIELDS = {
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "WORK_EMAIL": "email",
    "EMAIL": "email",
    "WORK_PHONE_NUMBER": "phone",
    "PHONE_NUMBER": "phone",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "job_title",
    "COUNTRY": "country",
}
_FIELD_RANK = {name: rank for rank, name in enumerate(LINKEDIN_FIELDS)}


def _linkedin_answer(answer: LinkedInAnswer, question: LinkedInQuestion | None) -> str | None:
    """A text answer as given; a multiple-choice answer as its options' texts, comma-separated."""
    text = _object(answer.answerDetails.get("textQuestionAnswer")).get("answer")
    if isinstance(text, str):
        return text
    chosen = _object(answer.answerDetails.get("multipleChoiceAnswer")).get("options")
    if not isinstance(chosen, list):
        return None
    details = (question.questionDetails if question else {}).get("multipleChoiceQuestionDetails", {})
    labels = {option.get("id"): _localized(option.get("text")) for option in details.get("options", [])}
    return ", ".join(labels.get(option) or str(option) for option in chosen)


def _object(value: object) -> dict[str, Any]:
    """`value` when a JSON object, else empty: LinkedIn may send `"textQuestionAnswer": null`."""
    return value if isinstance(value, dict) else {}


def _localized(text: object) -> str | None:
    """The first translation of LinkedIn's `{"localized": {"en_US": "..."}}`."""
    if isinstance(text, dict) and isinstance(text.get("localized"), dict):
        return next((str(v) for v in text["localized"].values()), None)
    return None


def linkedin_contact_interaction(
    note: LinkedInNotification,
    lead: LinkedInLead,
    form: LinkedInForm | None,
    received_at: datetime,
    *,
    max_ahead: timedelta | None = None,
) -> Interaction:
    """The identify event linking `linkedin:<response URN>` to the answers of the form response.
    Predefined questions fill the contact; the others, the hidden fields and the consent boxes go to
    properties under their names."""
    questions = {str(q.questionId): q for q in (form.content.questions if form and form.content else [])}
    mapped: dict[str, str] = {}
    mapped_from: dict[str, str] = {}  # contact field -> the predefined field its value came from
    extra: dict[str, str] = {}
    for answer in lead.formResponse.answers:
        question = questions.get(str(answer.questionId))
        value = _linkedin_answer(answer, question)
        if value is None or not value.strip():
            continue
        predefined = (question.predefinedField if question else None) or ""
        target = LINKEDIN_FIELDS.get(predefined)
        if target is None:
            extra[(question.name if question else None) or f"question_{answer.questionId}"] = value
        elif target not in mapped or _FIELD_RANK[predefined] < _FIELD_RANK[mapped_from[target]]:
            if target in mapped:  # a preferred field displaces the other, kept among the answers
                extra[mapped_from[target]] = mapped[target]
            mapped[target], mapped_from[target] = value, predefined
        else:
            extra[predefined] = value
    properties: dict[str, object] = {
        "platform": "linkedin",
        "form_response_urn": note.leadGenFormResponse,
        "answers": extra,
    }
    form_id = linkedin_form_id(lead.versionedLeadGenFormUrn, note.leadGenForm)
    if form_id:
        properties["form_id"] = form_id
    hidden = {str(f["name"]): f.get("value") for f in (form.hiddenFields if form else []) if f.get("name")}
    if hidden:
        properties["hidden_fields"] = hidden
    consents = {
        str(c["consentId"]): bool(c.get("accepted"))
        for c in lead.formResponse.consentResponses
        if c.get("consentId") is not None
    }
    if consents:
        properties["consents"] = consents
    occurred_at, invalid = platform_time(
        lead.submittedAt, "submittedAt", received_at, max_ahead, per_second=1000
    )
    properties.update(invalid)
    return _ad_contact_event(
        event_id=f"linkedin-contact-{_linkedin_digest(note)}",
        anonymous_id=f"linkedin:{note.leadGenFormResponse}",
        mapped=mapped,
        fallbacks=_next_best(extra, LINKEDIN_FIELDS),
        properties=properties,
        source=Source(channel="linkedin_ads", utm_source="linkedin", utm_medium="paid_social"),
        interaction_type=InteractionType.IDENTIFY,
        occurred_at=occurred_at,
        received_at=received_at,
        is_test=lead.testLead,
    )
