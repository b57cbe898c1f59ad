"""`leadpipe import`: CSV lead lists (trade fairs, exports) sent through capture's batch endpoint.

Validation, consent and dedupe stay in capture: this module only maps columns to the public
event shape, gives every row a deterministic event id and reports what capture refused.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, TextIO

import aiohttp
import orjson

from services.capture.consent import IMPORT_LINE
from services.runtime.errors import FieldProblem, summarise

# Normalised header (lower case, runs of non-alphanumerics as "_") -> contact field.
CONTACT_COLUMNS: Mapping[str, str] = {
    "email": "email",
    "e_mail": "email",
    "email_address": "email",
    "mail": "email",
    "first_name": "first_name",
    "firstname": "first_name",
    "given_name": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "surname": "last_name",
    "family_name": "last_name",
    "company": "company",
    "company_name": "company",
    "organisation": "company",
    "organization": "company",
    "job_title": "job_title",
    "jobtitle": "job_title",
    "title": "job_title",
    "position": "job_title",
    "phone": "phone",
    "phone_number": "phone",
    "telephone": "phone",
    "mobile": "phone",
    "country": "country",
}
CONSENT_COLUMNS = frozenset({"consent", "marketing_consent", "opt_in", "optin", "newsletter"})
TIME_COLUMNS = frozenset({"occurred_at", "scanned_at", "timestamp"})  # ISO 8601 with a zone
BATCH_SIZE = 100
RETRIES = 5


@dataclass(frozen=True)
class Row:
    line: int  # the file line the record starts on (header is line 1)
    values: dict[str, str]


@dataclass(frozen=True)
class Refusal:
    line: int
    reason: str


@dataclass
class Report:
    total: int = 0
    published: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)
    failed: list[Refusal] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.refused or self.failed else 0


def header_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def read_rows(text: str) -> tuple[list[Row], list[Refusal]]:
    """Rows with their starting line; the delimiter (`,` `;` tab) is sniffed from the header."""
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t|", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [header_key(name) for name in next(reader, [])]
    rows: list[Row] = []
    refused: list[Refusal] = []
    start = reader.line_num + 1
    for cells in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            refused.append(Refusal(line, f"{len(cells)} cells but the header has {len(header)} columns"))
            continue
        rows.append(Row(line, {k: v for k, v in zip(header, cells, strict=False) if k}))
    return rows, refused


def event_id(campaign: str, source: str, values: Mapping[str, str]) -> str:
    """Same campaign, source and row content -> same id, so a re-import (even of an edited or
    re-ordered file) publishes only rows that are new; an identical row twice is one lead."""
    content = orjson.dumps([campaign, source, sorted(values.items())])
    return "import-" + hashlib.blake2b(content, digest_size=16).hexdigest()


def to_event(row: Row, *, source: str, campaign: str, imported_at: datetime) -> dict[str, object]:
    """The public event (`InteractionIn` JSON) for one row; capture validates it."""
    contact: dict[str, str] = {}
    properties: dict[str, object] = {IMPORT_LINE: row.line}  # also marks its consent as imported
    consent: dict[str, str] = {}
    occurred_at = imported_at.isoformat()
    for column, value in row.values.items():
        if column in CONTACT_COLUMNS and CONTACT_COLUMNS[column] not in contact:
            contact[CONTACT_COLUMNS[column]] = value
        elif column in CONSENT_COLUMNS and value.strip():
            consent["marketing_email"] = value.strip()
        elif column in TIME_COLUMNS and value.strip():
            occurred_at = value.strip()
        elif value.strip():
            properties[column] = value.strip()
    return {
        "event_id": event_id(campaign, source, row.values),
        "type": "event_badge_scan" if source == "event" else "form_submit",
        "occurred_at": occurred_at,
        "contact": contact,
        "source": {"channel": source, "utm_campaign": campaign},
        "consent": consent,
        "properties": properties,
    }


def _problems(result: Mapping[str, object]) -> str:
    fields = result.get("fields")
    if isinstance(fields, list):
        problems: list[FieldProblem] = [
            {"field": str(f.get("field")), "reason": str(f.get("reason"))}
            for f in fields
            if isinstance(f, dict)
        ]
        return summarise(problems)
    return str(result.get("error", "refused"))


class CaptureClient:
    """POSTs batches to capture, honouring Retry-After on 429/503."""

    def __init__(self, session: aiohttp.ClientSession, url: str, api_key: str) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/v1/events:batch"
        self._headers = {"X-API-Key": api_key, "Content-Type": "application/json"}

    async def send(self, events: list[dict[str, object]]) -> list[dict[str, object]]:
        body = orjson.dumps({"events": events})
        for attempt in range(RETRIES):
            async with self._session.post(self._url, data=body, headers=self._headers) as response:
                if response.status in (429, 503) and attempt < RETRIES - 1:
                    await asyncio.sleep(_retry_after(response.headers.get("Retry-After")))
                    continue
                text = await response.text()
                try:
                    answer = orjson.loads(text)
                except orjson.JSONDecodeError:  # a proxy's page, say
                    raise ImportFailed(
                        f"capture answered {response.status} without JSON: {text[:200]!r}"
                    ) from None
                if response.status != 200:
                    raise _refusal(response.status, answer)
                results: list[dict[str, object]] = answer["results"]
                return results
        raise ImportFailed("capture stayed unavailable")  # pragma: no cover - loop always returns


def _retry_after(value: str | None) -> float:
    """Retry-After in seconds; 1 when absent or not a number (an HTTP date, say)."""
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


def _refusal(status: int, answer: object) -> ImportFailed:
    """Capture's problem answer (`error` and `message`) as the import's error."""
    problem = answer if isinstance(answer, dict) else {}
    error, message = problem.get("error"), problem.get("message")
    text = (
        f"capture answered {status} {error}: {message}" if error else f"capture answered {status}: {answer}"
    )
    return BodyTooLarge(text) if error == "body_too_large" else ImportFailed(text)


class ImportFailed(Exception):
    """Capture refused the whole request (wrong key, unreachable, ...)."""


class BodyTooLarge(ImportFailed):
    """The request was over capture's body limit (`CAPTURE_MAX_BODY_BYTES`): fewer rows fit."""


async def publish(
    rows: list[Row],
    client: CaptureClient,
    *,
    source: str,
    campaign: str,
    imported_at: datetime,
    progress: Callable[[int], None] = lambda done: None,
) -> Report:
    batches = _Batches(
        client,
        Report(total=len(rows)),
        partial(to_event, source=source, campaign=campaign, imported_at=imported_at),
    )
    for start in range(0, len(rows), BATCH_SIZE):
        chunk = rows[start : start + BATCH_SIZE]
        await batches.publish_fitting(chunk)
        progress(start + len(chunk))
    return batches.report


@dataclass(frozen=True)
class _Batches:
    """The import's requests to capture, and its report of what capture answered."""

    client: CaptureClient
    report: Report
    event: Callable[[Row], dict[str, object]]

    async def publish_fitting(self, rows: list[Row]) -> None:
        """`rows` in one request, or in halves while capture finds the request too large; a row too
        large alone is refused. A hundred wide rows (12 KB each) over capture's 1 MiB stopped the
        whole import, though each row on its own was taken."""
        try:
            await self.publish(rows)
        except BodyTooLarge as exc:
            if len(rows) == 1:
                self.report.refused.append(Refusal(rows[0].line, f"too large for one request: {exc}"))
                return
            half = len(rows) // 2
            await self.publish_fitting(rows[:half])
            await self.publish_fitting(rows[half:])

    async def publish(self, rows: list[Row]) -> None:
        """One request for `rows`, then again for those capture could not store yet (same ids)."""
        report = self.report
        pending = dict(enumerate(rows))
        for attempt in range(RETRIES):
            order = list(pending)
            retry: dict[int, Row] = {}
            for result in await self.client.send([self.event(pending[i]) for i in order]):
                index = order[int(str(result["index"]))]
                row, status = pending[index], result["status"]
                if status == "accepted":
                    report.published += 1
                elif status == "duplicate":
                    report.duplicates += 1
                elif status == "rejected":
                    report.refused.append(Refusal(row.line, _problems(result)))
                elif attempt < RETRIES - 1:  # unavailable / in_flight: same ids, safe to resend
                    retry[index] = row
                else:
                    report.failed.append(Refusal(row.line, f"not stored: {status}"))
            pending = retry
            if not pending:
                break
            await asyncio.sleep(0.5 * 2**attempt)


class Progress:
    """A bar on a terminal; plain counts per batch otherwise (logs, CI)."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()

    def __call__(self, done: int) -> None:
        if self.tty:
            width = 30
            filled = width * done // max(self.total, 1)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {done}/{self.total} rows")
            if done >= self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"sent {done}/{self.total} rows\n")
        self.stream.flush()


def render(report: Report, out: IO[str]) -> None:
    out.write(
        f"{report.published} published, {report.duplicates} already imported, "
        f"{len(report.refused)} refused, {len(report.failed)} failed (of {report.total} rows)\n"
    )
    for refusal in sorted([*report.refused, *report.failed], key=lambda r: r.line):
        out.write(f"line {refusal.line}: {refusal.reason}\n")


def import_file(
    path: Path,
    *,
    source: str,
    campaign: str,
    url: str,
    api_key: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Exit code 1 when any row was refused or not stored, 2 when the import could not run."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        err.write(f"cannot read {path}: {exc}\n")
        return 2
    return asyncio.run(
        run_import(text, source=source, campaign=campaign, url=url, api_key=api_key, out=out, err=err)
    )


async def run_import(
    text: str,
    *,
    source: str,
    campaign: str,
    url: str,
    api_key: str,
    out: TextIO,
    err: TextIO,
) -> int:
    rows, unreadable = read_rows(text)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            report = await publish(
                rows,
                CaptureClient(session, url, api_key),
                source=source,
                campaign=campaign,
                imported_at=datetime.now(UTC),
                progress=Progress(len(rows), err),
            )
    except (ImportFailed, aiohttp.ClientError, TimeoutError) as exc:
        err.write(f"import stopped: {exc}\n")
        return 2
    report.total += len(unreadable)
    report.refused.extend(unreadable)
    render(report, out)
    return report.exit_code
