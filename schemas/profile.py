"""The lead profile: one clean view of a person, built up by enrich."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from schemas.base import Contract


class EmailKind(StrEnum):
    BUSINESS = "business"
    FREE = "free"
    DISPOSABLE = "disposable"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class Seniority(StrEnum):
    """Seniority levels enrich derives from a job title (``LeadProfile.seniority`` holds the value)."""

    C_LEVEL = "c_level"  # owners, founders, presidents and chief officers
    VP = "vp"
    DIRECTOR = "director"
    MANAGER = "manager"
    INDIVIDUAL_CONTRIBUTOR = "individual_contributor"
    STUDENT = "student"


class Firmographics(Contract):
    """Company facts looked up by the company's e-mail domain."""

    company_name: str | None = Field(None, examples=["Example GmbH"])
    domain: str | None = Field(None, examples=["example.com"])
    employee_range: str | None = Field(None, examples=["201-500"])
    employees: int | None = Field(None, ge=0, examples=[350])
    industry: str | None = Field(None, examples=["Software"])
    revenue_range: str | None = Field(None, examples=["50M-100M"])
    country: str | None = Field(None, description="ISO 3166-1 alpha-2.", examples=["DE"])


class FieldSource(Contract):
    """Where and when a profile field's current value came from."""

    source: str = Field(examples=["form_submit"])
    event_id: str
    updated_at: AwareDatetime


class LeadProfile(Contract):
    """The newest non-empty value of each field, with provenance."""

    lead_id: str
    email: str | None = Field(None, description="Normalised (trimmed, lower-cased) e-mail address.")
    email_kind: EmailKind = EmailKind.UNKNOWN
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = Field(None, description="E.164.", examples=["+49301234567"])
    company: str | None = None
    job_title: str | None = None
    seniority: str | None = Field(None, examples=["vp"])
    department: str | None = Field(None, examples=["marketing"])
    country: str | None = Field(None, description="ISO 3166-1 alpha-2.", examples=["DE"])
    timezone: str | None = Field(None, examples=["Europe/Berlin"])
    firmographics: Firmographics = Field(default_factory=Firmographics)
    is_competitor: bool = False
    is_customer: bool = False
    marketing_consent: bool = Field(False, description="Confirmed double opt-in for marketing e-mail.")
    anonymous_ids: list[str] = Field(default_factory=list, description="Anonymous ids merged into this lead.")
    field_sources: dict[str, FieldSource] = Field(default_factory=dict)
