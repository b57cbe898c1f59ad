"""E-mail content per template id: one YAML file each in this directory, rendered to text and HTML.

A template has a subject, a preview line, paragraphs (with `[label](url)` links), an optional
call-to-action button and a sign-off. `$first_name`, `$last_name` and `$company` are filled from the
command's personalisation, with friendly defaults when unknown. Every URL goes through `link`, which
the mailer uses to wrap it in a signed click-tracking redirect. Templates are validated when the
mailer starts; an error names the file, the key and the problem. A step whose template id has no
file gets `_default.yaml` (and a warning), so a missing file never blocks the outbox.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

from services.runtime.config_file import load_yaml_model

TEMPLATES_DIR = Path(__file__).resolve().parent
# In the double opt-in template, this URL stands for the signed confirmation link (`.invalid` is a
# reserved name: it can never be a real address, and a template is validated with it as any URL).
CONFIRM_LINK = "https://confirm.leadpipe.invalid/"
DEFAULT_TEMPLATE = "_default"
# What personalisation may fill, and what stands in when the lead's value is unknown.
FALLBACKS: Mapping[str, str] = {"first_name": "there", "last_name": "", "company": "your team"}
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


class TemplateError(ValueError):
    """A template file cannot be used; the message names the file, the key and the problem."""


def _check_placeholders(text: str) -> str:
    template = Template(text)
    if not template.is_valid():
        raise ValueError("a `$` that starts no placeholder (write `$$` for a dollar sign)")
    unknown = sorted(set(template.get_identifiers()) - set(FALLBACKS))
    if unknown:
        raise ValueError(f"unknown placeholder(s) {unknown}; use {', '.join('$' + k for k in FALLBACKS)}")
    return text


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL with a host")
    return url


class CallToAction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(min_length=1, max_length=80)
    url: str

    _url = field_validator("url")(_check_url)


class EmailTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    subject: str = Field(min_length=1, max_length=150)
    preheader: str = Field("", max_length=200, description="The preview line mail clients show.")
    paragraphs: tuple[str, ...] = Field(min_length=1)
    cta: CallToAction | None = None
    sign_off: str = "The Leadpipe team"

    @field_validator("subject", "preheader", "sign_off")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\n" in value.strip():
            raise ValueError("must be one line")
        return _check_placeholders(value.strip())

    @field_validator("paragraphs")
    @classmethod
    def _paragraphs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for paragraph in value:
            _check_placeholders(paragraph)
            for _, url in _LINK.findall(paragraph):
                _check_url(url)
        return tuple(" ".join(p.split()) for p in value)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def _fill(text: str, values: Mapping[str, str]) -> str:
    return Template(text).substitute(values)


def _values(personalisation: Mapping[str, JsonValue]) -> dict[str, str]:
    """Known fields, on one line each (a line break in a subject would break the message)."""
    values = dict(FALLBACKS)
    for key in FALLBACKS:
        given = personalisation.get(key)
        if isinstance(given, str) and given.strip():
            values[key] = " ".join(given.split())
    return values


def _segments(paragraph: str) -> list[tuple[str, str | None]]:
    """(text, None) and (label, url) pieces: links are found before filling, so no value adds one."""
    pieces: list[tuple[str, str | None]] = []
    last = 0
    for match in _LINK.finditer(paragraph):
        pieces.append((paragraph[last : match.start()], None))
        pieces.append((match[1], match[2]))
        last = match.end()
    pieces.append((paragraph[last:], None))
    return pieces


def render(
    template: EmailTemplate, personalisation: Mapping[str, JsonValue], link: Callable[[str], str]
) -> RenderedEmail:
    """Text and HTML bodies; `link` turns each target URL into the URL to put in the mail."""
    plain = _values(personalisation)
    text_parts: list[str] = []
    html_parts: list[str] = []
    for paragraph in template.paragraphs:
        text, markup = [], []
        for words, url in _segments(paragraph):
            filled = _fill(words, plain)
            if url is None:
                text.append(filled)
                markup.append(html.escape(filled, quote=False))
            else:
                target = link(url)
                text.append(f"{filled} ({target})")
                markup.append(f'<a href="{html.escape(target)}">{html.escape(filled, quote=False)}</a>')
        text_parts.append("".join(text))
        html_parts.append(f"<p>{''.join(markup)}</p>")
    if template.cta is not None:
        target = link(template.cta.url)
        label = _fill(template.cta.label, plain)
        text_parts.append(f"{label}: {target}")
        html_parts.append(
            f'<p><a href="{html.escape(target)}" style="display:inline-block;padding:10px 18px;'
            'background:#1f6feb;color:#ffffff;text-decoration:none;border-radius:4px">'
            f"{html.escape(label, quote=False)}</a></p>"
        )
    sign_off = _fill(template.sign_off, plain)
    text_parts.append(sign_off)
    html_parts.append(f"<p>{html.escape(sign_off, quote=False)}</p>")
    preheader = html.escape(_fill(template.preheader, plain), quote=False)
    hidden = f'<div style="display:none;max-height:0;overflow:hidden">{preheader}</div>' if preheader else ""
    return RenderedEmail(
        subject=_fill(template.subject, plain),
        text="\n\n".join(text_parts) + "\n",
        html=hidden + "".join(html_parts),
    )


class TemplateLibrary:
    """The templates of one directory, by template id (the file name without `.yaml`)."""

    def __init__(self, templates: Mapping[str, EmailTemplate]) -> None:
        if DEFAULT_TEMPLATE not in templates:
            raise TemplateError(f"no {DEFAULT_TEMPLATE}.yaml: it is the fallback for unknown template ids")
        self._templates = dict(templates)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._templates) - {DEFAULT_TEMPLATE}

    def get(self, template_id: str) -> EmailTemplate | None:
        return self._templates.get(template_id)

    def get_or_default(self, template_id: str) -> EmailTemplate:
        return self._templates.get(template_id) or self._templates[DEFAULT_TEMPLATE]


def load_template(path: Path) -> EmailTemplate:
    return load_yaml_model(path, EmailTemplate, TemplateError)


def load_templates(directory: Path = TEMPLATES_DIR) -> TemplateLibrary:
    return TemplateLibrary({path.stem: load_template(path) for path in sorted(directory.glob("*.yaml"))})
