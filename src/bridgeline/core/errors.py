"""Errors the core raises. A refused input never changes the conference."""

from __future__ import annotations


class ActionRefused(Exception):
    """The action is not allowed in the conference's current state (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
