"""OPTIONS keepalive of the trunk: is the proxy that carries our numbers answering?

Every `keepalive_interval` seconds an OPTIONS goes to the trunk proxy (RFC 3261 11: any final
response, even 404 or 407, shows the proxy is there). A ping not answered within
`keepalive_timeout` is a miss; `keepalive_down_after` misses in a row mark the trunk down, the next
answer marks it up again, and each change is reported once as `TrunkStatus`. Pings go on while it
is down, so recovery is seen. Scheduling is by deadlines (`get_timer`/`handle_timer`): the first
ping is due at once (deadline 0), then every interval from the moment it was sent.

A late answer to an older ping counts too: the proxy is alive, however slow.

A proxy named by host is pinged at the servers DNS gives for it (RFC 3263, located by the carrier
and handed over with `set_servers`), never at the name: no ping goes out before the first list
arrives; a ping that goes unanswered moves the next one on to the next server, so the trunk is down
only when `keepalive_down_after` pings in a row, across its servers, got nothing; an empty list
(the name did not resolve) counts each due ping as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence

from .endpoint_core import ACCEPT, EndpointCore
from .events import TrunkStatus
from .headers import NameAddress
from .locate import numeric_host
from .message import make_request, new_call_id, new_tag
from .syntax import Params
from .transaction import (
    Destination,
    Event,
    FinalReceived,
    Terminated,
    TimedOut,
    TransactionKey,
    address_of,
)
from .uri import SipURI


class TrunkKeepalive:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core
        trunk = core.config.trunk
        self.enabled = trunk is not None and trunk.keepalive_interval > 0
        self.up = True  # until the pings say otherwise: dials are not refused before a first answer
        self.misses = 0
        # A proxy named by host: the servers DNS gave (None until the carrier located them).
        self.named = trunk is not None and numeric_host(address_of(trunk.proxy)[0]) is None
        self._servers: list[Destination] | None = None
        self._current = 0  # the server pinged next; moves on after a miss
        self._next_ping: float | None = 0.0 if self.enabled and not self.named else None
        self._answer_by: float | None = None
        self._waiting: TransactionKey | None = None  # the newest ping, until answered or missed
        self._keys: set[TransactionKey] = set()  # every ping still in the transaction layer

    def get_timer(self) -> float | None:
        deadlines = [d for d in (self._next_ping, self._answer_by) if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self._answer_by is not None and now >= self._answer_by:
            self._missed()
        if self._next_ping is not None and now >= self._next_ping:
            self._ping(now)

    def owns(self, key: TransactionKey) -> bool:
        return key in self._keys

    def on_event(self, event: Event) -> None:
        """A transaction-layer event for one of our pings."""
        if isinstance(event, FinalReceived):
            self.core.stats["trunk_keepalives_answered"] += 1
            self._alive()
        elif isinstance(event, TimedOut):
            if event.key == self._waiting:
                self._missed()
        elif isinstance(event, Terminated):
            self._keys.discard(event.key)

    def sizes(self) -> int:
        return len(self._keys)

    def set_servers(self, servers: Sequence[Destination], now: float) -> None:
        """The servers located for a proxy named by host, best first; the first ping goes now."""
        if not (self.enabled and self.named):
            return
        fresh = list(servers)
        if fresh != self._servers:
            self._servers, self._current = fresh, 0
        if self._next_ping is None:
            self._next_ping = now

    def _destination(self) -> Destination | None:
        trunk = self.core.config.trunk
        assert trunk is not None
        if not self.named:
            return trunk.proxy
        if not self._servers:
            return None
        return self._servers[self._current % len(self._servers)]

    def _ping(self, now: float) -> None:
        core, trunk = self.core, self.core.config.trunk
        assert trunk is not None
        if self._waiting is not None:  # the timeout is shorter than the interval; kept for safety
            self._missed()
        self._next_ping = now + trunk.keepalive_interval
        dest = self._destination()
        if dest is None:  # a name that did not resolve: nothing to ask, and nobody answered
            self._missed()
            return
        target = SipURI(trunk.domain)
        options = make_request(
            "OPTIONS",
            target,
            via=core.via(dest),
            from_addr=NameAddress(
                SipURI(core.config.domain, user=core.config.contact_user),
                None,
                Params([("tag", new_tag(core.rng))]),
            ),
            to_addr=NameAddress(target),
            call_id=new_call_id(core.rng, core.sent_by[0]),
            cseq=1,
            headers=[*core.ua_headers(), ("Accept", ACCEPT)],
        )
        key = core.tl.send_request(options, dest, now)
        core.stats["trunk_keepalives_sent"] += 1
        self._keys.add(key)
        self._waiting = key
        self._answer_by = now + trunk.keepalive_timeout

    def _missed(self) -> None:
        trunk = self.core.config.trunk
        assert trunk is not None
        self._waiting = self._answer_by = None
        self.misses += 1
        self._current += 1  # the next ping tries the next located server
        self.core.stats["trunk_keepalives_missed"] += 1
        if self.up and self.misses >= trunk.keepalive_down_after:
            self.up = False
            self.core.emit(TrunkStatus(up=False, misses=self.misses))

    def _alive(self) -> None:
        self._waiting = self._answer_by = None
        self.misses = 0
        if not self.up:
            self.up = True
            self.core.emit(TrunkStatus(up=True, misses=0))
