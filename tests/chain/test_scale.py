"""`vec_bytes`: the one reading of scalecodec's bytes shared by the turbobt adapter and the local node."""

from __future__ import annotations

from typing import Any

import pytest

from app.chain.scale import vec_bytes


@pytest.mark.parametrize(
    ("decoded", "expected"),
    [
        ("0x00ff", b"\x00\xff"),
        ([104, 105], b"hi"),
        ((), b""),
        ("hello", b"hello"),  # bytes that were UTF-8 come back as text
        ("0xnot-hex", b"0xnot-hex"),  # text that only looks like hex
        (b"raw", b"raw"),
        (None, b""),  # a `Data::None` field
    ],
)
def test_vec_bytes(decoded: Any, expected: bytes) -> None:
    assert vec_bytes(decoded) == expected
