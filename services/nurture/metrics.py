"""Nurture's own metrics, beside the common ones. Labels: sequence names and reasons only."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True)
class NurtureMetrics:
    enrolments: Counter
    exits: Counter
    queued: Counter
    sent: Counter
    suppressed: Counter
    skipped: Counter
    duplicates: Counter
    send_failures: Counter
    resubscribed: Counter


def nurture_metrics(registry: CollectorRegistry) -> NurtureMetrics:
    return NurtureMetrics(
        enrolments=Counter(
            "leadpipe_nurture_enrolments_total", "Leads enrolled.", ["sequence"], registry=registry
        ),
        exits=Counter(
            "leadpipe_nurture_exits_total",
            "Enrolments ended, by reason.",
            ["sequence", "reason"],
            registry=registry,
        ),
        queued=Counter(
            "leadpipe_nurture_messages_queued_total",
            "Commands published on nurture.outbox.",
            ["sequence"],
            registry=registry,
        ),
        sent=Counter(
            "leadpipe_nurture_messages_sent_total",
            "E-mails accepted by the SMTP server.",
            ["sequence"],
            registry=registry,
        ),
        suppressed=Counter(
            "leadpipe_nurture_suppressed_total",
            "Steps not sent (no_consent, cap, quiet_hours, no_address), held for a consent's confirmation "
            "(awaiting_confirmation), deliveries withheld (stopped) or refused for good by the SMTP server "
            "(refused: dead-lettered, reason smtp_refused).",
            ["reason"],
            registry=registry,
        ),
        skipped=Counter(
            "leadpipe_nurture_steps_skipped_total",
            "Steps skipped by their condition.",
            ["sequence"],
            registry=registry,
        ),
        duplicates=Counter(
            "leadpipe_nurture_duplicates_total",
            "Repeated input events or outbox commands recognised by id.",
            ["kind"],
            registry=registry,
        ),
        send_failures=Counter(
            "leadpipe_nurture_send_failures_total", "SMTP attempts that failed.", registry=registry
        ),
        resubscribed=Counter(
            "leadpipe_nurture_resubscribed_total",
            "Unsubscribed leads whose consent given since was confirmed: they may be mailed again, in "
            "the sequences their re-enrolment rules let them enter.",
            registry=registry,
        ),
    )
