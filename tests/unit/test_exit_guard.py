"""The exit guard (tests/exit_guard.py) ends a pytest run that a leftover thread would hold open.

Each case runs pytest in a child process over a test file of its own; without the guard the first
two would never exit (the interpreter waits for the non-daemon thread at shutdown)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LEAVES_A_THREAD = """
import threading

def test_leaves():
    threading.Thread(target=threading.Event().wait, name="stuck-consumer").start()
    assert {outcome}
"""

THREAD_ENDS_IN_TIME = """
import threading, time

def test_ends():
    threading.Thread(target=time.sleep, args=(0.2,), name="short-lived").start()
"""

# An executor's idle worker is not a daemon either, but the interpreter ends it at exit.
EXECUTOR_LEFT_OPEN = """
from concurrent.futures import ThreadPoolExecutor

def test_ends():
    assert ThreadPoolExecutor(1).submit(sum, [1, 2]).result() == 3
"""


def run_pytest(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\nexit_grace_seconds = 1\n")
    (tmp_path / "test_case.py").write_text(source)
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "tests.exit_guard", "-p", "no:cacheprovider"),
            *("--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"), str(tmp_path / "test_case.py")),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )


@pytest.mark.parametrize(("outcome", "status"), [("True", 0), ("False", 1)])
def test_a_thread_left_running_does_not_hold_the_run_and_the_status_is_kept(
    tmp_path: Path, outcome: str, status: int
) -> None:
    done = run_pytest(tmp_path, LEAVES_A_THREAD.format(outcome=outcome))
    assert done.returncode == status, done.stdout + done.stderr
    assert "threads still running after the tests: stuck-consumer" in done.stderr


@pytest.mark.parametrize("source", [THREAD_ENDS_IN_TIME, EXECUTOR_LEFT_OPEN], ids=["short-lived", "executor"])
def test_threads_the_exit_ends_anyway_are_left_to_it(tmp_path: Path, source: str) -> None:
    done = run_pytest(tmp_path, source)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit_guard" not in done.stderr
    assert "1 passed" in done.stdout
