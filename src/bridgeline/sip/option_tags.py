"""SIP option tags (RFC 3261 19.2): the extensions named in Supported, Require and Unsupported.

The endpoint implements 100rel (RFC 3262, `reliable_provisional`) and timer (RFC 4028,
`session_timer`), each behind a setting; a Require naming anything else gets 420 Bad Extension.
"""

from __future__ import annotations

from typing import Final

from .message import Message

RELIABLE_PROVISIONAL: Final = "100rel"
SESSION_TIMER: Final = "timer"


def option_tags(message: Message, header: str) -> list[str]:
    """The option tags of every `header` line, lower-cased (tags compare case-insensitively),
    in order, duplicates removed; empty elements (`Require: ,100rel`) are skipped."""
    tags: list[str] = []
    for item in message.headers.get_list(header):
        tag = item.strip().lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def unsupported_tags(message: Message, supported: frozenset[str]) -> list[str]:
    """The tags a request's Require names that we do not implement: answer 420 listing them in
    Unsupported (RFC 3261 8.2.2.3). The list is what the peer sent, bounded for the answer."""
    return [tag for tag in option_tags(message, "Require") if tag not in supported][:16]
