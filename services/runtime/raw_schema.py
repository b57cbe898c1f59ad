"""The schema of leadpipe's raw-bytes topics: a record's key and value become its event as they are.

Why: faust decodes every record it hands to an agent through its serializer registry, twice (key
and value): a codec looked up by name, `want_bytes`, a type check for models, each in its own
`try`. For the raw codec with `bytes` types all of that returns the bytes it was given (None stays
None), so the event is made from them directly: 3.5 -> 1.6 µs per record, where faust's decode
was 1.6-2.6% of the samples of score and nurture at 1,000 events/s (docs/performance.md,
seventeenth pass). Encoding, used when faust itself sends to such a topic, is faust's, unchanged;
the agents decode the bytes with pydantic (services/runtime/codec.py). The same change as a patch
for upstream: docs/upstream/.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import AppT, Message

RAW = "raw"


class RawBytesSchema(faust.Schema):  # type: ignore[type-arg]  # generic only in faust's stubs
    """`bytes` keys and values with the raw codec, decoded to themselves."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer=RAW, value_serializer=RAW)

    def update(self, **kwargs: Any) -> None:
        """Channels contribute their types to the schema; anything but raw bytes is refused, since
        `compile` would hand it over undecoded."""
        super().update(**kwargs)
        wanted = (bytes, bytes, RAW, RAW)
        found = (self.key_type, self.value_type, self.key_serializer, self.value_serializer)
        if found != wanted:
            raise ValueError(f"RawBytesSchema is for raw bytes keys and values, got {found}")

    def compile(self, app: AppT, **_: Any) -> Any:
        """faust's decode function for a message, without the registry: nothing to fail, so no
        decode-error callbacks either."""
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = False) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode
