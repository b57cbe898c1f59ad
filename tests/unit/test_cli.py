"""The `leadpipe` command's answers when it cannot run: one line and exit 2, never a traceback."""

from __future__ import annotations

import pytest

from services.cli import main


@pytest.mark.parametrize("command", [["requeue-crm"], ["requeue-fetches"]])
def test_redis_not_answering_is_one_line_and_exit_2(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A traceback's exit 1 read as `requeue-crm`'s own "deliveries kept for want of a webhook"."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"leadpipe {command[0]}: Redis did not answer (REDIS_URL): ")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_refused_settings_are_one_line_naming_the_variable_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADPIPE_LOG_LEVEL", "verbose")
    assert main(["requeue-crm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("leadpipe requeue-crm: settings refused: LEADPIPE_LOG_LEVEL: ")
