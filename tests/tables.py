"""The two ways leadpipe declares its changelog-backed tables, for tests that must hold for both."""

from __future__ import annotations

from typing import Any

from services.enrich.agents import LEAD_ID_KEYS

TABLE_FORMS: dict[str, dict[str, Any]] = {
    "bytes-keys": {"key_type": bytes, "value_type": bytes},  # score, nurture
    "str-keys-raw-schema": {"schema": LEAD_ID_KEYS},  # enrich
}
