"""The grammar of the ids clients choose (phlo_id, node_id): one ASCII grammar for every entry point.

An id is a path segment of the API (`/v1/phlo/{phlo_id}/multi_party_call/{node_id}`), so it must never
hold what a URL or a log line gives meaning to (`/ ? # %`, spaces, NUL, newlines) nor anything outside
ASCII: 1 to 64 characters, letters, digits, `.`, `_` and `-`, starting with a letter or a digit (so
neither `.` nor `..`). UUIDs, the ids Bridgeline makes itself, fit.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_ID = re.compile(ID_PATTERN, re.ASCII)  # used with fullmatch: `$` would let a final newline through


ID_RULE = (
    f"an id is 1 to {MAX_ID_LENGTH} ASCII letters, digits, '.', '_' or '-', starting with a letter or a digit"
)


class InvalidIdentifier(ValueError):
    pass


def is_valid_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None


def check_id(kind: str, text: str) -> str:
    """`text` if it is a valid id; raises InvalidIdentifier (a ValueError, so pydantic reports it)."""
    if not is_valid_id(text):
        raise InvalidIdentifier(f"{kind} {text[:80]!r} is not a valid id: {ID_RULE}")
    return text
