"""The SIP carrier's recovery over real sockets on 127.0.0.1: a carrier saves an answered leg's dialog
in its DialogStore, lets the leg go (as a node whose conference moved does), and another carrier on
another port restores it with a re-INVITE to a phone (a SipEndpoint on its own UDP socket)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
from collections.abc import Callable

from test_store_sip_dialogs import MemoryDialogs

from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.carriers.sip.transport_udp import SipUdpTransport
from bridgeline.app.ports import LegRequest
from bridgeline.core.commands import LegAnswered, LegHungUp, LegSignal
from bridgeline.core.model import LeaveReason, Role
from bridgeline.sip.endpoint import SipEndpoint
from bridgeline.sip.events import (
    EndpointConfig,
    EndpointEvent,
    IncomingCall,
    LegEnded,
    MediaUpdated,
    TrunkConfig,
)
from bridgeline.sip.offer_answer import answer_offer
from bridgeline.sip.refer_policy import LegKind


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_rtp_range(size: int = 8) -> str:
    """An even port and the ones after it, all free now."""
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(30000, 60000, 2)
        sockets = []
        try:
            for port in range(low, low + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return f"{low}-{low + size - 1}"
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no free RTP range")


def carrier(store: MemoryDialogs, signals: list[tuple[str, LegSignal]]) -> SipCarrier:
    settings = SipSettings.model_validate(
        {"listen": f"127.0.0.1:{free_udp_port()}", "rtp": {"ports": free_rtp_range()}}
    )
    made = SipCarrier(settings, dialogs=store)
    made.bind(lambda conference_id, signal: signals.append((conference_id, signal)))
    return made


class Phone:
    """A SipEndpoint on its own socket that answers every call; re-INVITEs it answers by itself."""

    def __init__(self) -> None:
        self.port = free_udp_port()
        self.events: list[EndpointEvent] = []
        # Calls from 127.0.0.1 are the "trunk's": taken without a digest challenge.
        config = EndpointConfig(("127.0.0.1", self.port), "phone", trunk=TrunkConfig(("127.0.0.1", 9), "x"))
        self.endpoint = SipEndpoint(config, random.Random(9))
        self.transport: SipUdpTransport | None = None

    async def start(self) -> None:
        self.transport = await SipUdpTransport.listen(self.endpoint, self._on_event, "127.0.0.1", self.port)

    def _on_event(self, event: EndpointEvent) -> None:
        self.events.append(event)
        if isinstance(event, IncomingCall) and event.offer is not None and self.transport is not None:
            answer, _ = answer_offer(event.offer, "127.0.0.1", 40000, 1, 1)
            self.endpoint.answer_incoming(event.leg_id, answer, self.transport.now)


async def until(predicate: Callable[[], object], what: str) -> None:
    for _ in range(500):  # 5 s
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_leg_saved_by_one_carrier_is_recovered_by_another_which_can_hang_it_up() -> None:
    store, signals = MemoryDialogs(), []
    phone = Phone()
    await phone.start()
    first = carrier(store, signals)
    await first.start()
    request = LegRequest("conf-1", "leg-1", f"sip:alice@127.0.0.1:{phone.port}", Role.AGENT, None, 30.0)
    second: SipCarrier | None = None
    try:
        first.dial(request)
        await until(lambda: ("conf-1", LegAnswered("leg-1")) in signals, "the answer")
        await until(lambda: "leg-1" in store.rows, "the saved dialog")
        first.release_conference("conf-1")  # it moved: no BYE, the row stays
        await first.stop()
        assert "leg-1" in store.rows and store.rows["leg-1"]["local_seq"] == 1

        second = carrier(store, signals)
        await second.start()
        # The member as the conference knows it: a number dialled through a trunk, say (the saved
        # dialog says where the call is; the address says who is on it, for REFER's transferors).
        request = dataclasses.replace(request, to="+14155550100")
        second.restore(request, answered=True)
        await until(lambda: second is not None and second.stats()["recoveries_succeeded"] == 1, "recovery")
        leg = second._legs["leg-1"]
        assert (leg.kind, leg.inbound, leg.answered) == (LegKind.TRUNK, False, True)
        assert any(isinstance(e, MediaUpdated) for e in phone.events)  # the re-INVITE's new offer
        await until(lambda: store.rows.get("leg-1", {}).get("local_seq", 0) > 100, "the new CSeq saved")
        second.restore(request, answered=True)  # told twice (a takeover racing a start): no harm
        await asyncio.sleep(0.1)
        assert second.stats()["recoveries_started"] == 1 and not any(
            isinstance(signal, LegHungUp) for _, signal in signals
        )

        second.drop("leg-1", LeaveReason.HANGUP)  # the new owner hangs up: its BYE ends the phone's call
        await until(lambda: any(isinstance(e, LegEnded) for e in phone.events), "the phone's call ended")
        await until(lambda: "leg-1" not in store.rows, "the row deleted")
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        if phone.transport is not None:
            phone.transport.close()


async def test_an_answered_leg_without_a_saved_dialog_is_reported_gone() -> None:
    store, signals = MemoryDialogs(), []
    made = carrier(store, signals)
    await made.start()
    try:
        made.restore(
            LegRequest("conf-1", "leg-9", "sip:x@127.0.0.1:9", Role.AGENT, None, 30.0), answered=True
        )
        await until(lambda: ("conf-1", LegHungUp("leg-9")) in signals, "the leg reported gone")
    finally:
        await made.stop()
