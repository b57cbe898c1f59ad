"""py-spy on a worker while it is measured (`--profile SECONDS`), and a summary of where time went.

py-spy's raw output is one collapsed stack per line ("frame;frame;frame count", root first, each
frame "function (file:line)"). The summary folds lines away and groups by function and by package,
so a bottleneck reads as "faust 45%, pydantic 12%, services.score 3%". Samples whose innermost frame is
the event loop's epoll call are counted apart as waiting (py-spy reports that call as active).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r"(?:site|dist)-packages/([A-Za-z0-9_])")
_STDLIB = re.compile(r"/lib/python3\.\d+/([A-Za-z0-9_])")
_PROJECT_ROOTS = ("services", "schemas", "bench")


def binary() -> str | None:
    """py-spy from PATH or next to this interpreter (the venv's bin, not always on PATH)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def record_argv(
    spy: str, pid: int, seconds: float, output: Path, *, rate: int = 100, gil: bool = False
) -> list[str]:
    """py-spy's command line. `gil`: sample only the thread holding the interpreter lock, so a thread
    waiting to take it back after a system call is not counted as busy (without it, socket writes
    and cross-thread wake-ups looked dearer than they are: docs/performance.md, twelfth pass)."""
    argv = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate)]
    argv += ["--format", "raw", "--output", str(output), "--nonblocking"]
    return [*argv, "--gil"] if gil else argv


def start(
    pid: int, seconds: float, output: Path, rate: int = 100, *, gil: bool = False
) -> subprocess.Popen[bytes] | None:
    """Record `seconds` of the process's stacks into `output` (raw format); None when py-spy is missing."""
    spy = binary()
    if spy is None:
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = record_argv(spy, pid, seconds, output, rate=rate, gil=gil)
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def package_of(file: str) -> str:
    """The package a frame's file belongs to: `faust`, `aiokafka`, `services.score`, `asyncio`, ...

    py-spy writes paths relative to `sys.path` ("faust/streams.py"); absolute ones are cut back the same way.
    """
    relative = file
    site = _SITE.search(file) or _STDLIB.search(file)
    if site:
        relative = file[site.start(1) :]
    elif file.startswith("/"):
        parts = PurePosixPath(file).parts
        roots = [parts.index(root) for root in _PROJECT_ROOTS if root in parts]
        if not roots:
            return "other"
        relative = "/".join(parts[min(roots) :])
    parts = PurePosixPath(relative).parts
    if not parts or parts[0].startswith("<"):
        return "other"
    if parts[0] == "services" and len(parts) > 2:
        return f"services.{parts[1]}"
    return parts[0].removesuffix(".py")


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one frame; the line number is dropped so a function's lines fold together."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match.group("function"), match.group("file")


@dataclass(frozen=True)
class ProfileSummary:
    """Shares of the busy samples; `waiting` is the share spent in the event loop's epoll call."""

    samples: int
    waiting: float
    self_by_package: list[tuple[str, float]]  # share of samples whose innermost frame is in the package
    self_by_function: list[tuple[str, float]]
    total_by_function: list[tuple[str, float]]  # share of samples with the function anywhere on the stack

    def lines(self, top: int = 8) -> list[str]:
        def fmt(rows: list[tuple[str, float]]) -> str:
            return ", ".join(f"{name} {share:.0%}" for name, share in rows[:top])

        return [
            f"{self.samples} busy samples, {self.waiting:.0%} more waiting in epoll",
            f"self time by package: {fmt(self.self_by_package)}",
            f"self time by function: {fmt(self.self_by_function)}",
            f"inclusive: {fmt(self.total_by_function)}",
        ]


def summarise(
    raw: str, *, skip: tuple[str, ...] = ("<module>", "_run_module_as_main", "_run_code")
) -> ProfileSummary:
    """Fold py-spy's raw lines into shares of samples (by package and function, self and inclusive)."""
    samples = waiting = 0
    self_package: Counter[str] = Counter()
    self_function: Counter[str] = Counter()
    total_function: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack.split(";") if f.strip()]
        frames = [(fn, file) for fn, file in frames if file]  # drop the "process"/"thread" pseudo frames
        if not frames:
            continue
        function, file = frames[-1]
        if package_of(file) == "selectors":  # the loop waiting for sockets, not work
            waiting += count
            continue
        samples += count
        self_package[package_of(file)] += count
        self_function[f"{function} ({package_of(file)})"] += count
        for name in {f"{fn} ({package_of(f)})" for fn, f in frames if fn not in skip}:
            total_function[name] += count

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, n / samples) for name, n in counter.most_common()] if samples else []

    waited = waiting / (samples + waiting) if samples + waiting else 0.0
    return ProfileSummary(
        samples, waited, shares(self_package), shares(self_function), shares(total_function)
    )
