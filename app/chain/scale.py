"""Values as scalecodec decodes them, read the same way by the real chain's adapter and the local node."""

from __future__ import annotations

from typing import Any


def vec_bytes(value: Any) -> bytes:
    """Bytes as scalecodec decodes them: 0x-hex, a list of ints ([u8; 0]), or text when they were UTF-8.

    None (a `Data::None` commitment field) is no bytes."""
    if isinstance(value, list | tuple):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    if isinstance(value, str):
        return value.encode()
    return bytes(value or b"")
