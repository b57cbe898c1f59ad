"""Web forms: per-form field mapping from config/forms.yaml, honeypot, consent. Mapping is pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.interaction import InteractionIn, InteractionType
from services.runtime.config_file import load_yaml_model
from services.runtime.errors import FieldProblem

CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "company", "job_title", "country")
SOURCE_FIELDS = ("utm_source", "utm_medium", "utm_campaign")


class FormConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: InteractionType = InteractionType.FORM_SUBMIT
    channel: str = "form"
    fields: dict[str, str] = Field(description="Form field name -> contact field.")
    consent_field: str | None = Field(None, description="Checkbox that grants marketing e-mail consent.")
    consent_text_version: str | None = None
    hidden: dict[str, str] = Field(
        default_factory=dict, description="Hidden field name -> utm_source/utm_medium/utm_campaign."
    )
    anonymous_id_field: str | None = "anonymous_id"
    honeypot: str | None = Field(None, description="A field people never fill in; bots do.")
    redirect: str | None = Field(None, description="Answer 303 to this URL instead of JSON.")

    @model_validator(mode="after")
    def _targets_exist(self) -> FormConfig:
        for name, target in self.fields.items():
            if target not in CONTACT_FIELDS:
                raise ValueError(f"fields.{name}: {target!r} is not one of {', '.join(CONTACT_FIELDS)}")
        for name, target in self.hidden.items():
            if target not in SOURCE_FIELDS:
                raise ValueError(f"hidden.{name}: {target!r} is not one of {', '.join(SOURCE_FIELDS)}")
        return self


class FormsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    forms: dict[str, FormConfig] = Field(default_factory=dict)


class FormsConfigError(ValueError):
    pass


def load_forms(path: Path) -> dict[str, FormConfig]:
    """Validated form mappings; the error names the file, the key and the problem."""
    if not path.exists():
        return {}
    return load_yaml_model(path, FormsFile, FormsConfigError).forms


def is_bot(form: FormConfig, submitted: Mapping[str, str]) -> bool:
    return bool(form.honeypot and submitted.get(form.honeypot, "").strip())


_TRUE = {"1", "true", "on", "yes", "checked"}


def named_as_posted(form: FormConfig, problems: list[FieldProblem]) -> list[FieldProblem]:
    """Problems named by the form's own fields (`work_email`), not the event's they map to
    (`contact.email`), which the page that posted the form does not have."""
    posted = {f"contact.{target}": name for name, target in form.fields.items()}
    posted |= {f"source.{target}": name for name, target in form.hidden.items()}
    if form.consent_field:
        posted["consent.marketing_email"] = form.consent_field
    if form.anonymous_id_field:
        posted["anonymous_id"] = form.anonymous_id_field
    return [{**problem, "field": posted.get(problem["field"], problem["field"])} for problem in problems]


def form_event(
    form_id: str, form: FormConfig, submitted: Mapping[str, str], occurred_at: datetime
) -> InteractionIn:
    """Translate submitted fields into the public event; raises ValidationError like POST /v1/events."""
    contact = {target: submitted[name] for name, target in form.fields.items() if name in submitted}
    source: dict[str, str] = {"channel": form.channel}
    source |= {target: submitted[name] for name, target in form.hidden.items() if name in submitted}
    consent: dict[str, object] = {}
    if form.consent_field:
        consent = {
            "marketing_email": submitted.get(form.consent_field, "").strip().lower() in _TRUE,
            "text_version": form.consent_text_version,
        }
    used = {*form.fields, *form.hidden, form.consent_field, form.honeypot, form.anonymous_id_field}
    extra = {k: v for k, v in submitted.items() if k not in used}
    anonymous_id = submitted.get(form.anonymous_id_field or "") or None
    return InteractionIn.model_validate(
        {
            "type": form.type,
            "occurred_at": occurred_at,
            "anonymous_id": anonymous_id,
            "contact": contact,
            "source": source,
            "consent": consent,
            "properties": {"form_id": form_id, "fields": extra},
        }
    )
