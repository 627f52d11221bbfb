"""The broker frame (presenced.store.frames): payload and origin, as every broker publishes them."""

from __future__ import annotations

import pytest

from presenced.store.frames import decode_frame, encode_frame


def test_frames_carry_the_origin() -> None:
    for payload in (b"", b"{}", b"\x00\xff\xff\x00 binary"):
        for origin in (None, "", "s1", "séssion-ü"):
            frame = encode_frame(payload, origin)
            assert decode_frame(frame) == (payload, origin)
    for bad in (b"", b"\x00", b"\x00\x05abc"):
        with pytest.raises(ValueError):
            decode_frame(bad)
    with pytest.raises(ValueError):
        encode_frame(b"x", "o" * 0xFFFF)
