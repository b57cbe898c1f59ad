"""Readers' views of the contracts: the fields one consumer reads of a record, and nothing else.

A consumer that reads a large record and uses a small part of it decodes a view instead of the whole
contract: pydantic skips the JSON of keys a model does not declare without building anything from
it, as the contracts do with unknown keys. A view is not a contract of its own: nothing is published
with it, and each of its fields has the contract's type, constraints and default, which
`tests/contract_views.py` checks for every view (the descriptions and examples stay on the
contract). One module per consumer.
"""
