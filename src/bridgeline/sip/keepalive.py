"""OPTIONS keepalive of the trunk: is the proxy that carries our numbers answering?

Every `keepalive_interval` seconds an OPTIONS goes to the trunk proxy (RFC 3261 11: any final
response, even 404 or 407, shows the proxy is there). A ping not answered within
`keepalive_timeout` is a miss; `keepalive_down_after` misses in a row mark the trunk down, the next
answer marks it up again, and each change is reported once as `TrunkStatus`. Pings go on while it
is down, so recovery is seen. Scheduling is by deadlines (`get_timer`/`handle_timer`): the first
ping is due at once (deadline 0), then every interval from the moment it was sent.

A late answer to an older ping counts too: the proxy is alive, however slow.
"""

from __future__ import annotations

from .endpoint_core import ACCEPT, EndpointCore
from .events import TrunkStatus
from .headers import NameAddress
from .message import make_request, new_call_id, new_tag
from .syntax import Params
from .transaction import Event, FinalReceived, Terminated, TimedOut, TransactionKey
from .uri import SipURI


class TrunkKeepalive:
    def __init__(self, core: EndpointCore) -> None:
        self.core = core
        trunk = core.config.trunk
        self.enabled = trunk is not None and trunk.keepalive_interval > 0
        self.up = True  # until the pings say otherwise: dials are not refused before a first answer
        self.misses = 0
        self._next_ping: float | None = 0.0 if self.enabled else None
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

    def _ping(self, now: float) -> None:
        core, trunk = self.core, self.core.config.trunk
        assert trunk is not None
        if self._waiting is not None:  # the timeout is shorter than the interval; kept for safety
            self._missed()
        target = SipURI(trunk.domain)
        options = make_request(
            "OPTIONS",
            target,
            via=core.via(trunk.proxy),
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
        key = core.tl.send_request(options, trunk.proxy, now)
        core.stats["trunk_keepalives_sent"] += 1
        self._keys.add(key)
        self._waiting = key
        self._answer_by = now + trunk.keepalive_timeout
        self._next_ping = now + trunk.keepalive_interval

    def _missed(self) -> None:
        trunk = self.core.config.trunk
        assert trunk is not None
        self._waiting = self._answer_by = None
        self.misses += 1
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
