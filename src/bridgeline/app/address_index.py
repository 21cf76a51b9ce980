"""Which live conference of this node holds each member address, per account, PHLO and node.

An address (a phone, a number) may be in one live conference of a PHLO node at a time: the index
answers "who holds it?" for API actions (`find`), for a new dial (refused when another conference
holds it) and for a new conference. Apart from `service.py`, which keeps it true: an input's new
addresses are claimed before its commit is awaited, so another conference's input running
meanwhile already sees them, and a conference that ends or moves to another node gives its up.
"""

from __future__ import annotations

from bridgeline.app.live import LiveConference

AddressKey = tuple[str, str, str, str]
"""(auth_id, phlo_id, node_id, address): PHLO ids are per account."""


class AddressIndex:
    def __init__(self) -> None:
        self._holders: dict[AddressKey, str] = {}  # -> conference_id

    def holder(self, auth_id: str, phlo_id: str, node_id: str, address: str) -> str | None:
        """The conference that holds `address` in that PHLO node, or None."""
        return self._holders.get((auth_id, phlo_id, node_id, address))

    def update(self, live: LiveConference) -> None:
        """Make the index hold what `live` claims now (nothing once it has ended)."""
        meta = live.meta
        current = live.conf.claimed_addresses() if live.conf.live else set()
        for address in live.addresses - current:
            self._holders.pop((meta.auth_id, meta.phlo_id, meta.node_id, address), None)
        for address in current - live.addresses:
            self._holders[(meta.auth_id, meta.phlo_id, meta.node_id, address)] = meta.conference_id
        live.addresses = current

    def release(self, live: LiveConference) -> None:
        """Give up every address `live` holds here (its owner is elsewhere now)."""
        conference_id = live.meta.conference_id
        for address in live.addresses:
            key = (live.meta.auth_id, live.meta.phlo_id, live.meta.node_id, address)
            if self._holders.get(key) == conference_id:
                del self._holders[key]
        live.addresses = set()
