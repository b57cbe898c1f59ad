"""Settings from the environment: shared infrastructure names, per-service prefixes, hashed keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.capture.settings import CaptureSettings
from services.nurture.app import create_app as create_nurture
from services.nurture.settings import NurtureSettings
from services.route.settings import RouteSettings
from services.runtime.api_keys import hash_api_key
from services.runtime.settings import ServiceSettings


def test_shared_infrastructure_settings_come_from_unprefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPIPE_BROKER_URL", "10.0.0.5:9093")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("LEADPIPE_TOPIC_PARTITIONS", "12")
    settings = CaptureSettings()
    assert settings.broker_url == "kafka://10.0.0.5:9093"
    assert settings.bootstrap_servers == "10.0.0.5:9093"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.topic_partitions == 12


def test_service_settings_use_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPTURE_WEB_PORT", "9000")
    monkeypatch.setenv("CAPTURE_API_KEYS", "alpha, beta ,," + hash_api_key("gamma"))
    settings = CaptureSettings()
    assert settings.web_port == 9000
    assert settings.api_key_hashes == {hash_api_key("alpha"), hash_api_key("beta"), hash_api_key("gamma")}
    assert "alpha" not in repr(settings)


def test_each_service_reads_its_own_smtp_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """nurture's mails and route's SLA notices may go through different relays (SmtpSettings)."""
    monkeypatch.setenv("NURTURE_SMTP_HOST", "marketing-relay")
    monkeypatch.setenv("ROUTE_SMTP_HOST", "internal-relay")
    monkeypatch.setenv("ROUTE_SMTP_PORT", "587")
    monkeypatch.setenv("ROUTE_SMTP_STARTTLS", "true")
    nurture, route = NurtureSettings(), RouteSettings()
    assert (nurture.smtp_host, nurture.smtp_port, nurture.smtp_starttls) == ("marketing-relay", 1025, False)
    assert (route.smtp_host, route.smtp_port, route.smtp_starttls) == ("internal-relay", 587, True)
    with pytest.raises(ValidationError, match="notify_lease_seconds must exceed"):
        RouteSettings(notify_lease_seconds=3, redis_timeout=2.0)


def test_wrong_broker_scheme_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka://host:port"):
        ServiceSettings(broker_url="http://localhost:9092")


def test_topic_suffix_keeps_runs_apart() -> None:
    assert ServiceSettings(topic_suffix=".t1").topic("leads.dlq") == "leads.dlq.t1"


def test_settings_are_frozen() -> None:
    settings = ServiceSettings()
    with pytest.raises(ValidationError):
        settings.topic_partitions = 8  # type: ignore[misc]


def test_nurture_waits_longer_for_its_fetches_than_the_hand_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPIPE_FETCH_MAX_WAIT_MS", "40")
    assert NurtureSettings().fetch_max_wait_ms == 250  # off the hand-off path: its own setting
    assert CaptureSettings().fetch_max_wait_ms == 40
    monkeypatch.setenv("NURTURE_FETCH_MAX_WAIT_MS", "120")
    settings = NurtureSettings(mailer_enabled=False)
    assert create_nurture(settings).app.fetch_max_wait_ms == 120  # what its consumer is given


def test_the_batch_window_runs_from_an_idle_to_a_busy_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().batch_windows == (0.005, 0.025)
    monkeypatch.setenv("LEADPIPE_BATCH_WINDOW_MAX_MS", "40")
    assert ServiceSettings().batch_windows == (0.005, 0.04)


def test_an_idle_window_alone_above_the_busy_default_fixes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`LEADPIPE_BATCH_WINDOW_MS` alone was the fixed window before it adapted; it still is one."""
    monkeypatch.setenv("LEADPIPE_BATCH_WINDOW_MS", "50")
    assert ServiceSettings().batch_windows == (0.05, 0.05)


def test_a_busy_window_below_the_idle_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPIPE_BATCH_WINDOW_MS", "30")
    monkeypatch.setenv("LEADPIPE_BATCH_WINDOW_MAX_MS", "10")
    with pytest.raises(ValidationError, match=r"WINDOW_MAX_MS \(10.0\) is below LEADPIPE_BATCH_WINDOW_MS"):
        ServiceSettings()


def test_nurture_waits_longer_for_its_batches_than_the_hand_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPIPE_BATCH_WINDOW_MS", "8")
    assert NurtureSettings().batch_windows == (0.1, 0.1)  # off the hand-off path: its own setting
    assert CaptureSettings().batch_windows == (0.008, 0.025)
    monkeypatch.setenv("NURTURE_BATCH_WINDOW_MS", "20")
    monkeypatch.setenv("NURTURE_BATCH_WINDOW_MAX_MS", "60")
    nurture = create_nurture(NurtureSettings(mailer_enabled=False))
    assert nurture.settings.batch_windows == (0.02, 0.06)  # what its agent's window is given


def test_a_refused_window_names_the_variables_of_its_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NURTURE_BATCH_WINDOW_MAX_MS", "50")
    with pytest.raises(
        ValidationError, match=r"NURTURE_BATCH_WINDOW_MAX_MS \(50.0\) is below NURTURE_BATCH_WINDOW_MS"
    ):
        NurtureSettings()


def test_the_log_level_is_one_of_the_names_and_the_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """faust's worker took any text and stopped the service with "Unable to configure handler"."""
    monkeypatch.setenv("LEADPIPE_LOG_LEVEL", "debug")
    assert ServiceSettings().log_level == "DEBUG"
    monkeypatch.setenv("LEADPIPE_LOG_LEVEL", "verbose")
    with pytest.raises(ValidationError) as caught:
        ServiceSettings()
    assert "LEADPIPE_LOG_LEVEL" in str(caught.value) and "'verbose' is not a log level" in str(caught.value)
