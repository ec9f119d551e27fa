"""Bounds of client input shared by the features' schemas (issue 19: no input reaches a 500).

An integer from a client is bounded by what it names: a netuid is a u16 on chain, a block number a u32, and
an id or a limit no more than the database stores (a signed 64-bit column: SQLite and PostgreSQL raise
past it). Text a person reads back (key names, model names) carries no control characters. msgspec checks
the `Meta` below as it decodes a body; route parameters carry the same bounds in Litestar's own
`PathParameter`/`QueryParameter` (app/http/inputs.py), which is what Litestar checks on them.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

U16_MAX = 2**16 - 1
U32_MAX = 2**32 - 1
I64_MAX = 2**63 - 1

Netuid = Annotated[int, Meta(ge=0, le=U16_MAX, description="A subnet's netuid (0-65535).")]
# No C0 control characters and no DEL (NUL breaks PostgreSQL text; others forge lines in logs and tables).
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
