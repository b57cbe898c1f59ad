"""API keys kept as SHA-256 hashes and checked in constant time (shared by capture and route).

Why hashes: a dump of a settings object or of process memory must not hand out working keys, and
operators can configure `sha256:<hex>` values so the plain key never reaches the service at all.
Several keys may be valid at once, so a key is rotated by listing the old and the new one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from pydantic import SecretStr

HASH_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def hash_api_key(key: str) -> str:
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def split_keys(value: object) -> object:
    """A comma-separated environment value as a tuple of non-empty, stripped parts."""
    if isinstance(value, str):
        return comma_separated(value)
    return value


def comma_separated(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def as_hash(key: str) -> str:
    """A configured key as its hash: plain keys are hashed, `sha256:<64 hex digits>` kept.

    Raises ValueError for a malformed `sha256:` value, so a placeholder fails at start-up
    instead of silently locking everyone out."""
    if not key.startswith(HASH_PREFIX):
        return hash_api_key(key)
    digest = key.removeprefix(HASH_PREFIX).lower()
    if not _HEX_DIGEST.fullmatch(digest):
        raise ValueError("a key starting with sha256: must be followed by 64 hex digits")
    return HASH_PREFIX + digest


def hashed_keys(keys: Iterable[SecretStr | str]) -> tuple[SecretStr, ...]:
    """Keys from settings, replaced by their hashes (for a validator: plain keys are never stored)."""
    hashes: dict[str, None] = {}
    for key in keys:
        plain = key.get_secret_value() if isinstance(key, SecretStr) else key
        hashes[as_hash(plain)] = None
    return tuple(SecretStr(digest) for digest in hashes)


def keys_setting(value: object) -> object:
    """A keys setting's value as read (a comma-separated environment value, or a list), hashed: for a
    `mode="before"` validator. Anything else is left to the field's own validation."""
    parts = split_keys(value)
    if isinstance(parts, (tuple, list)) and all(isinstance(p, (str, SecretStr)) for p in parts):
        return hashed_keys(parts)
    return parts


def key_is_valid(presented: str, known_hashes: Iterable[str]) -> bool:
    digest = hash_api_key(presented)
    # Compare against every known hash so timing does not reveal which one matched.
    matched = False
    for known in known_hashes:
        matched |= hmac.compare_digest(digest, known)
    return matched
