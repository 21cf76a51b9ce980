"""SIP option tags (RFC 3261 19.2): the extensions named in Supported, Require and Unsupported.

The endpoint implements 100rel (RFC 3262, `reliable_provisional`) and timer (RFC 4028,
`session_timer`), each behind a setting; a Require naming anything else gets 420 Bad Extension.
"""

from __future__ import annotations

from typing import Final

from .message import Message
from .syntax import SipParseError

RELIABLE_PROVISIONAL: Final = "100rel"
SESSION_TIMER: Final = "timer"


def option_tags(message: Message, header: str) -> list[str]:
    """The option tags of every `header` line, lower-cased (tags compare case-insensitively),
    in order, duplicates removed; empty elements (`Require: ,100rel`) are skipped. Never raises:
    a garbled list yields tags nobody implements."""
    try:
        items = message.headers.get_list(header)
    except SipParseError:  # an unterminated quote: option tags have none, so split plainly
        items = [part for value in message.headers.get_all(header) for part in value.split(",")]
    tags: list[str] = []
    for item in items:
        tag = item.strip().lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def unsupported_tags(message: Message, supported: frozenset[str]) -> list[str]:
    """The tags a request's Require names that we do not implement: answer 420 listing them in
    Unsupported (RFC 3261 8.2.2.3). The list is what the peer sent, bounded for the answer."""
    unknown = [tag for tag in option_tags(message, "Require") if tag not in supported][:16]
    return [_token(tag) for tag in unknown]


def _token(text: str) -> str:
    """An option tag is a token (RFC 3261 25.1): what we echo in Unsupported is cut down to one."""
    return "".join(c for c in text if c.isascii() and (c.isalnum() or c in "-.!%*_+`'~"))[:64] or "-"
