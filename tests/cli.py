"""The real `leadpipe` command, run from an async test with its output captured."""

from __future__ import annotations

import asyncio
import io
from contextlib import redirect_stderr, redirect_stdout

from services.cli import main


async def run_cli(*argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `leadpipe argv...`, in a thread: it runs its own event loop."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with redirect_stdout(out), redirect_stderr(err):
            return main(list(argv))

    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()
