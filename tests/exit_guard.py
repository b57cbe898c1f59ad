"""A pytest plugin: the run ends when pytest is done, even if a thread it leaves behind would not.

Why: faust's consumer thread is not a daemon. A test that fails while a worker is still starting or
stopping (a regression in an outage test, say) leaves that thread running after the report, and the
interpreter then waits for it at exit forever: `make test`, and CI with it, would hang instead of
failing. Once every other plugin has finished (reports, caches), this one gives the interpreter a
few seconds to exit; if it is still waiting then, it names the threads it waits for and ends the
process with pytest's own exit status. Threads the interpreter ends itself at exit (an executor's
idle workers) are left to it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

_status = pytest.StashKey[int]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "exit_grace_seconds",
        "how long threads left running after the tests may take to end before the process exits",
        default="10",
    )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """The status as the other plugins left it (a plugin may change it in this hook)."""
    session.config.stash[_status] = int(session.exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Start the watch as pytest hands back its exit status: a normal exit ends the process, and the
    watch (a daemon thread) with it, long before the grace is up."""
    grace = float(config.getini("exit_grace_seconds"))
    status = config.stash.get(_status, 1)
    threading.Thread(target=_exit_after, args=(grace, status), name="exit-guard", daemon=True).start()


def _exit_after(grace: float, status: int) -> None:
    time.sleep(grace)
    left = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
    print(
        f"\nexit_guard: threads still running after the tests: {', '.join(left)}; exiting with {status}",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
