"""The checker's counting, on hand-made publications: it must see a loss, a second hand-off, a second
e-mail and a forgotten state, and must not mistake a same-id repeat for a duplicate."""

from __future__ import annotations

from collections import Counter

from tests.faults.checker import HOT, NURTURE, Report, expected_effects, tally, workload


def test_workload_has_unique_event_ids_and_both_kinds_of_lead() -> None:
    leads = workload("abc", 6)
    ids = [event["event_id"] for lead in leads for event in lead.events]
    assert len(ids) == len(set(ids)) == 12
    assert Counter(lead.kind for lead in leads) == {HOT: 3, NURTURE: 3}
    expected = expected_effects(leads)
    assert len(expected["hand-off"]) == 3
    assert expected["CRM post"] == expected["hand-off"]  # every hand-off reaches the team's CRM
    assert len(expected["e-mail"]) == len(expected["outbox"]) == 9
    assert len(expected["stage change"]) == 3 * 2 + 3


def test_same_id_again_is_a_repeat_not_a_duplicate() -> None:
    t = tally("hand-off", {"a", "b"}, [("a", "h1"), ("a", "h1"), ("b", "h2")])
    assert (t.seen, t.missing, t.duplicated, t.repeats, t.unexpected) == (2, 0, 0, 1, 0)


def test_a_second_handoff_a_loss_and_a_stranger_are_all_counted() -> None:
    t = tally("hand-off", {"a", "b", "c"}, [("a", "h1"), ("a", "h9"), ("b", "h2"), ("z", "h3")])
    assert (t.seen, t.missing, t.duplicated, t.repeats, t.unexpected) == (2, 1, 1, 0, 1)


def test_every_email_delivery_counts_so_a_resend_is_a_duplicate() -> None:
    step = ("lead", "welcome", 0)
    t = tally("e-mail", {step}, [(step, "delivery-0"), (step, "delivery-1")])
    assert t.duplicated == 1


def test_report_is_ok_only_without_loss_duplicate_or_stranger() -> None:
    clean = tally("x", {"a"}, [("a", "1"), ("a", "1")])
    lost = tally("x", {"a"}, [])
    report = Report(
        "t", leads=1, events_sent=1, events_accepted=1, answers=Counter({"202": 1}), effects=[clean]
    )
    assert report.ok and report.repeats == 1
    report.effects.append(lost)
    assert not report.ok and report.lost == 1
    assert "lost 1" in report.summary()
