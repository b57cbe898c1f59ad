"""Interactions: what websites, forms and ad platforms tell us a person did."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import AwareDatetime, Field, JsonValue, ValidationInfo, field_validator, model_validator

from schemas.base import Contract, LeadEvent, trusted


class InteractionType(StrEnum):
    PAGE_VIEW = "page_view"
    IDENTIFY = "identify"
    FORM_SUBMIT = "form_submit"
    AD_LEAD = "ad_lead"
    CONTENT_DOWNLOAD = "content_download"
    WEBINAR_REGISTERED = "webinar_registered"
    WEBINAR_ATTENDED = "webinar_attended"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    EMAIL_BOUNCE = "email_bounce"
    PRICING_PAGE_VIEW = "pricing_page_view"
    DEMO_REQUEST = "demo_request"
    QUOTE_REQUEST = "quote_request"
    CALLBACK_REQUEST = "callback_request"
    TRIAL_SIGNUP = "trial_signup"
    PRODUCT_USAGE = "product_usage"
    EVENT_BADGE_SCAN = "event_badge_scan"
    CHAT_STARTED = "chat_started"
    UNSUBSCRIBE = "unsubscribe"


class IdentityKind(StrEnum):
    """Which identifier the lead id was derived from."""

    EMAIL = "email"
    ANONYMOUS = "anonymous"


_MAX_TEXT = 256


class Contact(Contract):
    """What the person told us about themselves. Every field is optional."""

    email: str | None = Field(None, max_length=320, examples=["jane.doe@example.com"])
    first_name: str | None = Field(None, max_length=_MAX_TEXT, examples=["Jane"])
    last_name: str | None = Field(None, max_length=_MAX_TEXT, examples=["Doe"])
    phone: str | None = Field(None, max_length=64, examples=["+49 30 1234567"])
    company: str | None = Field(None, max_length=_MAX_TEXT, examples=["Example GmbH"])
    job_title: str | None = Field(None, max_length=_MAX_TEXT, examples=["VP Marketing"])
    country: str | None = Field(None, max_length=_MAX_TEXT, examples=["DE", "Germany"])

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("email")
    @classmethod
    def _email_syntax(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or trusted(info.context):
            return value
        problem = _email_problem(value)
        if problem is not None:
            raise ValueError(f"not a valid email address: {problem}")
        return value


@lru_cache(maxsize=65_536)
def _email_problem(address: str) -> str | None:
    """Why `address` is not a valid e-mail address (syntax only), or None.

    Remembered per address: a lead's events repeat its contact, and the check was 8.6% of capture's
    CPU at 1,000 events/s (docs/performance.md, eleventh pass). The answer depends on the string
    alone; the cache holds at most 65,536 addresses."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


class Source(Contract):
    """Where the interaction came from (channel and campaign attribution)."""

    channel: str | None = Field(
        None,
        max_length=64,
        description="Channel: web, form, meta_ads, google_ads, linkedin_ads, event, import, email, ...",
        examples=["web"],
    )
    utm_source: str | None = Field(None, max_length=_MAX_TEXT, examples=["google"])
    utm_medium: str | None = Field(None, max_length=_MAX_TEXT, examples=["cpc"])
    utm_campaign: str | None = Field(None, max_length=_MAX_TEXT, examples=["spring-launch"])


class Consent(Contract):
    """Consent the person gave with this interaction; confirmed later by double opt-in."""

    marketing_email: bool | None = Field(None, description="Ticked the marketing e-mail consent box.")
    text_version: str | None = Field(
        None, max_length=64, description="Version of the consent text shown.", examples=["2026-01"]
    )


class InteractionIn(Contract):
    """The public event shape capture accepts on `POST /v1/events`."""

    model_config = Contract.model_config | {"extra": "forbid"}

    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description=(
            "Sender's id for idempotent retries: the same id sent again with the same API key within"
            " the dedupe window is answered as a duplicate; generated when absent. The published"
            " record's id is scoped to the API client (`<client>:<event_id>`), and the 202 answer"
            " names it."
        ),
    )
    type: InteractionType = Field(examples=["page_view"])
    occurred_at: AwareDatetime = Field(examples=["2026-11-21T09:30:00Z"])
    anonymous_id: str | None = Field(None, min_length=1, max_length=128, examples=["anon-7f3a9c"])
    contact: Contact = Field(default_factory=Contact)
    source: Source = Field(default_factory=Source)
    consent: Consent = Field(default_factory=Consent)
    properties: dict[str, JsonValue] = Field(
        default_factory=dict, description="Free-form details (page URL, asset id, usage figure, ...)."
    )

    @field_validator("anonymous_id", mode="before")
    @classmethod
    def _blank_id_is_missing(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="after")
    def _needs_identity(self) -> InteractionIn:
        if not self.anonymous_id and not self.contact.email:
            raise ValueError("an event needs either anonymous_id or contact.email")
        return self


class Interaction(LeadEvent):
    """A validated interaction on `leads.interactions`, keyed by the lead id capture derived."""

    type: InteractionType
    identity: IdentityKind = Field(description="Whether lead_id comes from the e-mail or the anonymous id.")
    anonymous_id: str | None = None
    contact: Contact = Field(default_factory=Contact)
    source: Source = Field(default_factory=Source)
    consent: Consent = Field(default_factory=Consent)
    properties: dict[str, JsonValue] = Field(default_factory=dict)
    received_at: AwareDatetime = Field(description="When capture accepted the event.")
    is_test: bool = Field(False, description="Test lead from an ad platform; kept out of sales hand-offs.")
    record_type: Literal["interaction"] = "interaction"
