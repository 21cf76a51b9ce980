"""Errors the core raises. A refused input never changes the conference."""

from __future__ import annotations


class ActionRefused(Exception):
    """The action is not allowed in the conference's current state (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AddressInUse(ActionRefused):
    """Refused because a member address is already in a live conference (of this node or, in a cluster,
    of another): still a 400 to the API; an inbound call that needs it is answered 486 Busy Here."""
