"""The media thread reads a round of datagrams (one per ready socket) before handing them to the
runtime: every datagram is still handled once, in order per socket, so SRTP refusals are counted
per packet exactly as when each was handled as it was read."""

from __future__ import annotations

import os
import socket

from media_peer import port_range, until

from bridgeline.adapters.carriers.sip.media_engine import MediaEngine, SrtpKeys
from bridgeline.media.srtp import SrtpContext

SUITE = "AES_CM_128_HMAC_SHA1_80"
LEGS = 3


def rtp(seq: int, ssrc: int) -> bytes:
    header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big")
    return header + ssrc.to_bytes(4, "big") + bytes(160)


async def test_a_round_of_datagrams_is_handled_once_each_and_refusals_are_counted_per_packet() -> None:
    low, _ = port_range(2 * LEGS)
    engine = MediaEngine(port_min=low, port_max=low + 2 * LEGS - 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        try:
            burst: list[tuple[bytes, int]] = []
            for i in range(LEGS):
                keys = SrtpKeys(SUITE, os.urandom(30), os.urandom(30))
                port = engine.open_leg(f"l{i}")
                engine.connect_leg(
                    f"l{i}",
                    remote=peer.getsockname(),
                    payload_type=0,
                    telephone_event_pt=None,
                    send=False,
                    srtp=keys,
                )
                sender = SrtpContext(SrtpKeys(SUITE, keys.remote_key, keys.local_key))
                first, second = sender.protect(rtp(1, i + 1)), sender.protect(rtp(2, i + 1))
                tampered = first[:-1] + bytes([first[-1] ^ 1])
                # Four datagrams wait on each leg's socket: the thread reads them in four rounds of
                # one datagram per leg.
                burst += [(data, port) for data in (tampered, first, first, second)]
            for data, port in burst:  # queued before the thread starts: its first poll finds all
                peer.sendto(data, ("127.0.0.1", port))
            await engine.start()
            counted = ("packets_in", "srtp_auth_failed", "srtp_replayed")
            assert await until(lambda: sum(engine.stats[k] for k in counted) >= len(burst))
            stats = engine.stats
            assert stats["packets_in"] == 2 * LEGS  # first and second, each once
            assert stats["srtp_auth_failed"] == LEGS  # the tampered ones
            assert stats["srtp_replayed"] == LEGS  # first, again
        finally:
            await engine.stop()
    assert engine.stats["open_sockets"] == 0
