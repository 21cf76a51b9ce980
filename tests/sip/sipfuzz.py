"""Shared Hypothesis strategy for the SIP fuzz tests: valid messages mutated at the byte level."""

from __future__ import annotations

from hypothesis import strategies as st

# Bytes that matter to a SIP parser: separators, line ends, digits, and a few tokens.
SPECIAL = [bytes([c]) for c in b' \t\r\n:;,<>"@[]?=&/\\\x00\xff0123456789']
SPECIAL += [b"\r\n ", b"\r\n\r\n", b"SIP/2.0"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], special: list[bytes] = SPECIAL, max_ops: int = 6) -> bytes:
    """A seed message with 1..max_ops insertions, deletions, replacements, truncations or
    duplicated header lines."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "duplicate"]))
        if op == "insert":
            data[pos:pos] = draw(st.sampled_from(special) | st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif op == "replace" and pos < len(data):
            data[pos : pos + 1] = draw(st.sampled_from(special))
        elif op == "truncate":
            del data[pos:]
        elif op == "duplicate":
            end = data.find(b"\r\n", pos)
            start = data.rfind(b"\r\n", 0, pos) + 2
            if end > start:
                data[end:end] = data[start - 2 : end]
    return bytes(data)
