"""Whether the request being served has committed a change, so that its 500 can be honest.

The HTTP edge starts a mark for each request; the service sets it after each conference commit.
A failure after that (e.g. while carrying out the commit's effects) must not answer "nothing was
changed". A context variable: the mark follows the request's task through its awaits, and no
other request sees it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class CommitMark:
    committed: bool = False


_current: ContextVar[CommitMark | None] = ContextVar("commit_mark", default=None)


def start_request() -> CommitMark:
    """A fresh mark for the request running in this context."""
    mark = CommitMark()
    _current.set(mark)
    return mark


def mark_committed() -> None:
    """A change is in the store; without a request (timers, signals) there is nobody to tell."""
    mark = _current.get()
    if mark is not None:
        mark.committed = True
