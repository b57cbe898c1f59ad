"""Readers' views of the contracts: the fields one consumer reads of a record, and nothing else.

A consumer that reads a large record and uses a small part of it decodes a view instead of the whole
contract: pydantic skips the JSON of keys a model does not declare without building anything from
it, as the contracts do with unknown keys. A view is not a contract of its own: nothing is published
with it, and each of its fields has the contract's type, constraints and default, which
`tests/contract_views.py` checks for every view (the descriptions and examples stay on the
contract). One module per consumer.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

V = TypeVar("V", bound=BaseModel)


def read_as(view: type[V], record: BaseModel) -> V:
    """`record` as a consumer decoding `view` from the record's JSON reads it (for the bench's
    oracle and tests, which build contracts)."""
    return view.model_validate_json(record.model_dump_json())
