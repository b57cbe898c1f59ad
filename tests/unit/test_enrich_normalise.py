"""Normalisation of messy real-world contact values: e-mail, phone, country, names, job titles."""

from __future__ import annotations

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.profile import EmailKind, Seniority
from services.enrich.config import load_config
from services.enrich.normalise import (
    classify_title,
    domain_matches,
    normalise_country,
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_text,
)

CONFIG = load_config()


@pytest.mark.parametrize(
    ("raw", "address", "kind"),
    [
        (" Jane.Doe@Example.COM ", "jane.doe@example.com", EmailKind.BUSINESS),
        ("mailto:Bob@Sub.Acme.io", "bob@sub.acme.io", EmailKind.BUSINESS),
        ("<ann@acme.de>", "ann@acme.de", EmailKind.BUSINESS),
        ("someone@GMAIL.com", "someone@gmail.com", EmailKind.FREE),
        ("max@web.de", "max@web.de", EmailKind.FREE),
        ("x@mailinator.com", "x@mailinator.com", EmailKind.DISPOSABLE),
        ("x@guerrillamail.com", "x@guerrillamail.com", EmailKind.DISPOSABLE),
        ("bad@@example.com", "bad@@example.com", EmailKind.INVALID),
        ("no-at-sign.example.com", "no-at-sign.example.com", EmailKind.INVALID),
    ],
)
def test_email_is_cleaned_and_classified(raw: str, address: str, kind: EmailKind) -> None:
    email = normalise_email(raw)
    assert email is not None
    assert (email.address, email.kind) == (address, kind)


@pytest.mark.parametrize("raw", [None, "", "   ", "mailto:"])
def test_missing_email_is_none(raw: str | None) -> None:
    assert normalise_email(raw) is None


local = st.from_regex(r"[a-z][a-z0-9._-]{0,15}[a-z0-9]", fullmatch=True).filter(lambda s: ".." not in s)
host = st.from_regex(r"[a-z][a-z0-9-]{1,12}[a-z0-9]\.(com|de|io|co\.uk)", fullmatch=True)


@given(local, host, st.text(" \t", max_size=3), st.booleans())
def test_same_mailbox_in_other_case_or_spaces_is_the_same_address(
    user: str, domain: str, pad: str, shout: bool
) -> None:
    clean = normalise_email(f"{user}@{domain}")
    typed = f"{pad}{user}@{domain}{pad}"
    messy = normalise_email(typed.upper() if shout else typed.title())
    assert clean is not None and messy is not None
    assert messy.address == clean.address == f"{user}@{domain}"
    assert normalise_email(messy.address) == messy  # idempotent


@given(st.text(max_size=80))
def test_email_never_raises(raw: str) -> None:
    normalise_email(raw)


def test_subdomains_match_listed_domains() -> None:
    listed = frozenset({"acme.com"})
    assert domain_matches("acme.com", listed)
    assert domain_matches("eu.mail.acme.com", listed)
    assert not domain_matches("notacme.com", listed)
    assert not domain_matches("acme.com.evil.io", listed)
    assert not domain_matches(None, listed)


@pytest.mark.parametrize(
    ("raw", "region", "e164", "country"),
    [
        ("+49 30 1234567", None, "+49301234567", "DE"),
        ("(030) 123 45 67", "DE", "+49301234567", "DE"),
        ("030/1234567", "DE", "+49301234567", "DE"),
        ("0049 30 1234567", "FR", "+49301234567", "DE"),
        ("+44 (0)20 7946 0958", None, "+442079460958", "GB"),
        ("0044 20 7946 0958", "DE", "+442079460958", "GB"),
        ("+1 (415) 555-2671 ext. 12", None, "+14155552671", "US"),
        ("415.555.2671 x99", "US", "+14155552671", "US"),
        ("tel:+33 1 42 68 53 00", None, "+33142685300", "FR"),
        ("+41 44 668 18 00", None, "+41446681800", "CH"),
    ],
)
def test_phone_numbers_become_e164_with_country(
    raw: str, region: str | None, e164: str, country: str
) -> None:
    phone = normalise_phone(raw, region)
    assert phone is not None
    assert (phone.e164, phone.region) == (e164, country)


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        (None, None),
        ("", None),
        ("n/a", None),
        ("12", "DE"),
        ("030 1234567", None),
        ("555-2671", "US"),
        ("+49 123", None),
        ("call me", "DE"),
    ],
)
def test_unusable_phone_numbers_are_none(raw: str | None, region: str | None) -> None:
    assert normalise_phone(raw, region) is None


@given(st.text(max_size=40), st.sampled_from([None, "DE", "US", "GB"]))
def test_phone_never_raises_and_output_is_stable(raw: str, region: str | None) -> None:
    phone = normalise_phone(raw, region)
    if phone is not None:
        assert phone.e164.startswith("+")
        again = normalise_phone(phone.e164)
        assert again is not None and again.e164 == phone.e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        # Italy (and the Vatican) dial the 0 from abroad too: "(0)" is part of the number there
        ("+39 (0)2 1234 5678", "+390212345678"),
        ("+39 (0)6 6988 1234", "+390669881234"),
        ("+39 (0)331 123456", "+390331123456"),  # not the mobile number +39 331 123456
        ("+39(0)212345678", "+390212345678"),
        # elsewhere it is the trunk zero, not dialled from abroad
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+49 (0)30 1234567", "+49301234567"),
        ("+31 (0)20 123 4567", "+31201234567"),
        ("+41 (0)44 668 18 00", "+41446681800"),
    ],
)
def test_a_zero_in_brackets_is_dropped_only_where_it_is_a_trunk_prefix(raw: str, e164: str) -> None:
    phone = normalise_phone(raw)
    assert phone is not None and phone.e164 == e164


def test_single_timezone_phone_numbers_give_the_timezone() -> None:
    phone = normalise_phone("+49 30 1234567")
    assert phone is not None and phone.timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("DE", "DE"),
        ("de", "DE"),
        ("DEU", "DE"),
        ("276", "DE"),
        ("Germany", "DE"),
        (" germany ", "DE"),
        ("Deutschland", "DE"),
        ("U.K.", "GB"),
        ("UK", "GB"),
        ("England", "GB"),
        ("United Kingdom", "GB"),
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States", "US"),
        ("united states of america", "US"),
        ("The Netherlands", "NL"),
        ("Holland", "NL"),
        ("Côte d'Ivoire", "CI"),
        ("Viet Nam", "VN"),
        ("Vietnam", "VN"),
        ("Russia", "RU"),
        ("South Korea", "KR"),
        ("Schweiz", "CH"),
        ("Österreich", "AT"),
    ],
)
def test_countries_become_iso_alpha2(raw: str, code: str) -> None:
    assert normalise_country(raw, CONFIG.country_aliases) == code


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("Turkey", "TR"),
        ("Türkiye", "TR"),
        ("Turkiye", "TR"),
        ("Republic of Korea", "KR"),
        ("Korea, Republic of", "KR"),
        ("North Korea", "KP"),
        ("Ivory Coast", "CI"),
        ("Cote d'Ivoire", "CI"),
        ("Côte d\u2019Ivoire", "CI"),  # a typographic apostrophe
        ("Cape Verde", "CV"),
        ("Cabo Verde", "CV"),
        ("Swaziland", "SZ"),
        ("Eswatini", "SZ"),
        ("Burma", "MM"),
        ("Myanmar", "MM"),
        ("Macedonia", "MK"),
        ("North Macedonia", "MK"),
        ("Vatican", "VA"),
        ("Holy See", "VA"),
        ("Czech Republic", "CZ"),
        ("Czechia", "CZ"),
        ("Iran", "IR"),
        ("Islamic Republic of Iran", "IR"),
        ("Syria", "SY"),
        ("Laos", "LA"),
        ("Republic of Moldova", "MD"),
        ("Tanzania", "TZ"),
        ("Bolivia", "BO"),
        ("Democratic Republic of the Congo", "CD"),
        ("Republic of the Congo", "CG"),
        ("Palestine", "PS"),
        ("State of Palestine", "PS"),
        ("East Timor", "TL"),
        ("México", "MX"),
        ("Brasil", "BR"),
        ("Sao Tome and Principe", "ST"),
        ("São Tomé & Príncipe", "ST"),
        ("Curacao", "CW"),
        ("Reunion", "RE"),
        ("Aland Islands", "AX"),
        ("Bosnia & Herzegovina", "BA"),
        ("Trinidad & Tobago", "TT"),
        ("St. Lucia", "LC"),
        ("St Kitts and Nevis", "KN"),
        ("British Virgin Islands", "VG"),
        ("Falkland Islands", "FK"),
        ("the Bahamas", "BS"),
        ("the UK", "GB"),
        ("The Gambia", "GM"),
        ("Macau", "MO"),
        ("Espana", "ES"),
        ("Oesterreich", "AT"),
    ],
)
def test_common_and_former_country_names_are_found(raw: str, code: str) -> None:
    """People type the name they know, with or without its accents: a country refused here also
    loses a phone number written without its international prefix."""
    assert normalise_country(raw, CONFIG.country_aliases) == code


def test_configured_aliases_match_with_or_without_accents() -> None:
    config = type(CONFIG).model_validate({**CONFIG.model_dump(), "country_aliases": {"Ísland": "IS"}})
    assert normalise_country("island", config.country_aliases) == "IS"
    assert normalise_country("ÍSLAND", config.country_aliases) == "IS"


@pytest.mark.parametrize("raw", [None, "", "  ", "Narnia", "Europe", "n/a", "XX"])
def test_unknown_countries_are_none(raw: str | None) -> None:
    assert normalise_country(raw, CONFIG.country_aliases) is None


@given(
    st.sampled_from(list(pycountry.countries)),
    st.sampled_from(["alpha_2", "alpha_3", "name"]),
    st.sampled_from([str.lower, str.upper, str, lambda s: f"  {s} "]),
)
def test_every_iso_country_is_found_by_code_or_name(country: object, attribute: str, case: object) -> None:
    typed = case(getattr(country, attribute))  # type: ignore[operator]
    assert normalise_country(typed, CONFIG.country_aliases) == country.alpha_2  # type: ignore[attr-defined]


@given(st.text(max_size=40))
def test_country_never_raises(raw: str) -> None:
    code = normalise_country(raw, CONFIG.country_aliases)
    assert code is None or (len(code) == 2 and code.isupper())


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("JANE", "Jane"),
        ("o'brien", "O'Brien"),
        ("jean-luc", "Jean-Luc"),
        ("van der berg", "Van der Berg"),
        ("MARIA DE LA CRUZ", "Maria de la Cruz"),
        ("McDonald", "McDonald"),
        ("  Ann \t Marie ", "Ann Marie"),
        ("José", "José"),
        ("123", None),
        ("", None),
        (None, None),
    ],
)
def test_names_are_tidied(raw: str | None, clean: str | None) -> None:
    assert normalise_name(raw) == clean


def test_text_loses_control_characters_and_extra_space() -> None:
    assert normalise_text(" Acme\u00a0 GmbH\n") == "Acme GmbH"
    assert normalise_text("\t \n") is None


@pytest.mark.parametrize(
    ("title", "seniority", "department"),
    [
        ("CEO", Seniority.C_LEVEL, "executive"),
        ("Co-Founder & CEO", Seniority.C_LEVEL, "executive"),
        ("Founder", Seniority.C_LEVEL, "executive"),
        ("Owner", Seniority.C_LEVEL, "executive"),
        ("Chief Marketing Officer", Seniority.C_LEVEL, "marketing"),
        ("CTO", Seniority.C_LEVEL, "engineering"),
        ("cfo", Seniority.C_LEVEL, "finance"),
        ("Geschäftsführer", Seniority.C_LEVEL, "executive"),
        ("Managing Director", Seniority.C_LEVEL, "executive"),
        ("President", Seniority.C_LEVEL, "executive"),
        ("VP Marketing", Seniority.VP, "marketing"),
        ("Vice-President, Sales", Seniority.VP, "sales"),
        ("SVP Engineering", Seniority.VP, "engineering"),
        ("Head of Growth", Seniority.DIRECTOR, "marketing"),
        ("Director of Revenue Operations", Seniority.DIRECTOR, "sales"),
        ("Marketing Manager", Seniority.MANAGER, "marketing"),
        ("Team Lead Customer Support", Seniority.MANAGER, "customer_success"),
        ("Senior Software Engineer", Seniority.INDIVIDUAL_CONTRIBUTOR, "engineering"),
        ("Principal Engineer", Seniority.INDIVIDUAL_CONTRIBUTOR, "engineering"),
        ("Sales Development Representative", Seniority.INDIVIDUAL_CONTRIBUTOR, "sales"),
        ("Lead Generation Specialist", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Executive Assistant to the CEO", Seniority.INDIVIDUAL_CONTRIBUTOR, "executive"),
        ("Chief of Staff", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Student", Seniority.STUDENT, "education"),
        ("Marketing Intern", Seniority.STUDENT, "marketing"),
        ("Werkstudent Vertrieb", Seniority.STUDENT, "sales"),
        ("PhD candidate", Seniority.STUDENT, None),
    ],
)
def test_titles_map_to_seniority_and_department(
    title: str, seniority: Seniority, department: str | None
) -> None:
    facts = classify_title(title, CONFIG)
    assert (facts.seniority, facts.department) == (seniority, department)


@pytest.mark.parametrize(
    ("title", "seniority", "department"),
    [
        # dotted acronyms read as the acronym
        ("C.E.O.", Seniority.C_LEVEL, "executive"),
        ("c.t.o", Seniority.C_LEVEL, "engineering"),
        ("V.P. Sales", Seniority.VP, "sales"),
        # every chief officer, not only the common ones
        ("CHRO", Seniority.C_LEVEL, "hr"),
        ("CCO", Seniority.C_LEVEL, None),
        ("CLO", Seniority.C_LEVEL, None),
        ("Co-Founder & CTO", Seniority.C_LEVEL, "engineering"),
        # a product or process owner owns a backlog or a process, not the company
        ("Product Owner", Seniority.INDIVIDUAL_CONTRIBUTOR, "product"),
        ("Senior Product Owner", Seniority.INDIVIDUAL_CONTRIBUTOR, "product"),
        ("Process Owner", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Data Owner", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Owner", Seniority.C_LEVEL, "executive"),
        ("Co-Owner", Seniority.C_LEVEL, "executive"),
        ("Owner & Managing Director", Seniority.C_LEVEL, "executive"),
        # German compounds: a department's head is a director, a team's or project's a manager
        ("Vertriebsleiter", Seniority.DIRECTOR, "sales"),
        ("Abteilungsleiter", Seniority.DIRECTOR, None),
        ("Marketingleiterin", Seniority.DIRECTOR, "marketing"),
        ("Personalleiter", Seniority.DIRECTOR, "hr"),
        ("Leiter Vertrieb", Seniority.DIRECTOR, "sales"),
        ("Bereichsleiterin", Seniority.DIRECTOR, None),
        ("Teamleiterin", Seniority.MANAGER, None),
        ("Projektleiter", Seniority.MANAGER, None),
        ("Gruppenleiter", Seniority.MANAGER, None),
        ("Halbleiter-Ingenieur", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Reisebegleiter", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        # students are who the role serves, not who holds it
        ("Director of Student Affairs", Seniority.DIRECTOR, "education"),
        ("Student Recruitment Manager", Seniority.MANAGER, "hr"),
        ("Internship Coordinator", Seniority.MANAGER, None),
        ("Student", Seniority.STUDENT, "education"),
        ("Marketing Intern", Seniority.STUDENT, "marketing"),
        ("Student Assistant", Seniority.STUDENT, "education"),
        ("Werkstudent Vertrieb", Seniority.STUDENT, "sales"),
        # unchanged
        ("CEO", Seniority.C_LEVEL, "executive"),
        ("Chief of Staff", Seniority.INDIVIDUAL_CONTRIBUTOR, None),
        ("Executive Assistant to the CEO", Seniority.INDIVIDUAL_CONTRIBUTOR, "executive"),
        ("Head of IT", Seniority.DIRECTOR, "it"),
        ("Lead Engineer", Seniority.MANAGER, "engineering"),
    ],
)
def test_title_rules_read_acronyms_compounds_and_qualifiers(
    title: str, seniority: Seniority, department: str | None
) -> None:
    facts = classify_title(title, CONFIG)
    assert (facts.seniority, facts.department) == (seniority, department)


def test_a_title_is_classified_once_per_config_and_afresh_under_new_rules() -> None:
    """Titles repeat on every event of a lead, so their facts are remembered, but per config: a
    reloaded config with other rules must not answer from the old one's memory."""
    title = "Head of Growth Hacking"
    first = classify_title(title, CONFIG)
    assert classify_title(title, CONFIG) is first
    rules = CONFIG.model_dump()
    rules["seniority"] = [{"patterns": ["growth"], "level": "c_level"}, *rules["seniority"]]
    rules["departments"] = [{"patterns": ["hacking"], "department": "engineering"}, *rules["departments"]]
    reloaded = type(CONFIG).model_validate(rules)
    assert (classify_title(title, reloaded).seniority, classify_title(title, reloaded).department) == (
        Seniority.C_LEVEL,
        "engineering",
    )
    assert (first.seniority, first.department) != (Seniority.C_LEVEL, "engineering")


@pytest.mark.parametrize("title", [None, "", "   ", "123", "--"])
def test_empty_titles_say_nothing(title: str | None) -> None:
    facts = classify_title(title, CONFIG)
    assert (facts.seniority, facts.department) == (None, None)


@given(st.text(max_size=60))
def test_any_title_with_letters_gets_a_seniority(title: str) -> None:
    facts = classify_title(title, CONFIG)
    has_letters = any(ch.isalpha() for ch in title)
    assert (facts.seniority is not None) == has_letters
