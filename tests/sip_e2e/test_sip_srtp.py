"""SDES-SRTP with real phones: baresip with `mediaenc=srtp-mand` (RTP/SAVP, keys in a=crypto) called
by a PHLO and calling in. Each phone records what it decoded (baresip's sndfile module), and that is
where the tones are checked: on the wire the audio is encrypted, which the capture shows (the RTP
sent to a phone does not decode as G.711 of the tone it hears). Phones without SRTP get a 488 when
they call in, and a callee that answers an SRTP-required offer without keys is hung up on.

The server requires SRTP by default here, and from the trunk (every loopback caller is "the trunk"),
with the AES_CM suites only (`srtp_suites`): baresip also knows the GCM ones we offer first by
default (test_sip_srtp_gcm.py), so these calls prove the setting and keep AES_CM covered.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import struct
import time
import wave
from typing import Any

import numpy as np
from sipaudio import HEARD_SHARE, Heard, assert_hears, audio
from sipkit import Baresip, Ports, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

NUMBER, PHLO = "+14155550188", "sip-e2e-srtp"
AGENT: dict[str, int] = {}
SRTP_MODULES = "module srtp.so\nmodule sndfile.so\n"
AES_CM_80_TAG = 10  # bytes of authentication tag after each packet
AES_CM_ONLY = ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]


def sip_config(ports: Ports) -> dict[str, Any]:
    AGENT["port"] = ports.take(2)
    agent = f"sip:agent@127.0.0.1:{AGENT['port']}"
    return {
        "srtp": "required",
        "srtp_suites": AES_CM_ONLY,
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test", "srtp": "required"},
        "inbound": [{"number": NUMBER, "phlo_id": PHLO, "payload": {"customer": "{{from}}", "agent": agent}}],
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def srtp_phone(
    lab: Lab, name: str, freq: int, *, mediaenc: str = "srtp-mand", sip_port: int | None = None
) -> Baresip:
    """An auto-answering baresip that encrypts its media (`mediaenc`: srtp-mand is RTP/SAVP only,
    srtp best effort) and records what it decodes in <work>/rec-<name>."""
    rec = lab.work / f"rec-{name}"
    rec.mkdir()
    port = sip_port or lab.ports.take(2)
    account = f"<sip:{name}@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=PCMU;mediaenc={mediaenc}"
    extra = SRTP_MODULES + f"snd_path {rec}\n"
    return lab.baresip(name, freq, account=account, sip_port=port, extra_config=extra)


def recorded(phone: Baresip) -> Heard:
    """What the phone decoded in the last second of its call, before the hangup (its -dec.wav)."""
    rec = phone.dir.parent / f"rec-{phone.name}"
    files = wait_for(lambda: sorted(rec.glob("*-dec.wav")), 5, f"{phone.name}'s recording")
    with wave.open(str(files[-1])) as wav:
        assert wav.getframerate() == 8000 and wav.getsampwidth() == 2, "unexpected recording format"
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).astype(np.float64)
    tail = samples[-int(1.3 * 8000) : -int(0.3 * 8000)]
    return Heard(tail, f"{phone.name}'s recording, last second")


def assert_not_g711_of(
    lab: Lab, phone: Baresip, freq: int, window: tuple[float, float], tag: int = AES_CM_80_TAG
) -> None:
    """The RTP sent to the phone is there, carries an SRTP tag of `tag` bytes, and decodes as
    noise, not the tone."""
    frames = [f for f in lab.frames(phone) if window[0] <= f.at < window[1]]
    assert len(frames) >= 25, f"too few RTP packets to {phone.name}: {len(frames)}"
    sizes = {len(f.payload) for f in frames}
    assert sizes == {160 + tag}, f"unexpected SRTP payload sizes {sizes}"
    stripped = [dataclasses.replace(f, payload=f.payload[:160]) for f in frames]  # without the tag
    wire = Heard(audio(stripped, *window), f"RTP to {phone.name} decoded as G.711")
    assert wire.share(freq) < HEARD_SHARE / 2, f"the tone is audible on the wire: {wire.describe()}"
    assert not wire.silent, wire.describe()


def hang_up_all(lab: Lab, phlo: Any, mpc_uuid: str, *addresses: str) -> None:
    mpc = lab.mpc(phlo)
    for address in addresses:
        mpc.member(address).hangup()
    lab.assert_ended(phlo, mpc_uuid)


def test_a_run_dials_two_srtp_phones_that_hear_each_other_over_encrypted_media(lab: Lab) -> None:
    # Our first suite here (sip_config), though baresip knows GCM too.
    two_srtp_phones_talk(lab, "AES_CM_128_HMAC_SHA1_80", AES_CM_80_TAG)


def two_srtp_phones_talk(lab: Lab, suite: str, tag: int) -> None:
    """Two SRTP phones dialled by a run hear each other (their own recordings) over `suite`; the RTP
    to each carries a `tag`-byte tag and does not decode as the tone; forged packets sprayed at every
    RTP port meanwhile are dropped, counted and logged, and none is heard."""
    agent = srtp_phone(lab, "agent", TONE_A)
    customer = srtp_phone(lab, "customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()

    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    dropped_before = lab.server.metrics().get("bridgeline_sip_srtp_auth_failed_total", 0)
    spray_forgeries(lab.server.rtp_range)  # while they talk: none may be heard or latch a leg
    talking = lab.listen(1.5)
    hang_up_all(lab, phlo, view["mpc_uuid"], agent.uri, customer.uri)
    agent.wait_event("CALL_CLOSED")
    customer.wait_event("CALL_CLOSED")

    assert_suite(agent, suite)
    assert_suite(customer, suite)
    assert_hears(recorded(agent), [TONE_B], others(TONE_B))  # decrypted by the phone itself
    assert_hears(recorded(customer), [TONE_A], others(TONE_A))
    assert_not_g711_of(lab, agent, TONE_B, talking, tag=tag)
    assert_not_g711_of(lab, customer, TONE_A, talking, tag=tag)
    assert lab.server.metrics()["bridgeline_sip_srtp_auth_failed_total"] - dropped_before >= 40
    assert lab.server.stderr().count("srtp_packets_dropped") >= 1


def assert_suite(phone: Baresip, suite: str) -> None:
    """The phone's srtp module says it encrypts with `suite`, and with no other."""
    used = set(re.findall(r"SRTP is Enabled \(cryptosuite=([A-Z0-9_]+)\)", phone.proc.stdout()))
    assert used == {suite}, f"{phone.name} used {used or 'no SRTP'}"


def spray_forgeries(ports: range) -> None:
    """Forged SRTP (an RTP header, G.711 and a made-up tag) at every RTP port of the server, a
    burst of 20 per port from a foreign socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for n in range(20):
            for port in ports[::2]:
                header = struct.pack("!BBHII", 0x80, 0, 40000 + n, n * 160, 0x0BAD0BAD)
                sock.sendto(header + bytes(160) + os.urandom(10), ("127.0.0.1", port))
            time.sleep(0.02)


def test_an_srtp_caller_is_answered_with_a_key_of_ours_and_hears_the_agent(lab: Lab) -> None:
    agent = srtp_phone(lab, "agent", TONE_A, sip_port=AGENT["port"])
    caller = srtp_phone(lab, "caller", TONE_B)
    lab.capture(agent, caller)
    phlo = lab.create_phlo(phlo_id=PHLO)
    caller_address = "sip:caller@127.0.0.1"  # the member address of an inbound SIP caller

    caller.command("dial", f"sip:{NUMBER}@{lab.server.sip_address}")
    view = lab.connected(phlo, agent.uri, hears=[caller_address])
    lab.connected(phlo, caller_address, hears=[agent.uri])
    talking = lab.listen(1.5)
    hang_up_all(lab, phlo, view["mpc_uuid"], agent.uri, caller_address)
    caller.wait_event("CALL_CLOSED")
    agent.wait_event("CALL_CLOSED")

    assert_hears(recorded(caller), [TONE_A], others(TONE_A))
    assert_hears(recorded(agent), [TONE_B], others(TONE_B))
    assert_not_g711_of(lab, caller, TONE_A, talking)


def test_a_caller_without_srtp_is_refused_with_488_and_a_reason(lab: Lab) -> None:
    plain = lab.baresip("plain", TONE_B)
    lab.create_phlo(phlo_id=PHLO + "-plain")
    plain.command("dial", f"sip:{NUMBER}@{lab.server.sip_address}")
    plain.wait_event("CALL_CLOSED")
    closed = next(e for e in plain.control.events if e.get("type") == "CALL_CLOSED")
    assert "488" in str(closed.get("param")), closed
    wait_for(lambda: "SRTP is required" in lab.server.stderr(), 5, "the refusal's log line")


def test_a_callee_answering_without_keys_is_hung_up_on(lab: Lab) -> None:
    agent = srtp_phone(lab, "agent", TONE_A)
    plain = lab.sipp_phone("plain", TONE_B)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=plain.uri)
    mpc_uuid = lab.connected(phlo, agent.uri)["mpc_uuid"]
    lab.left(phlo, plain.uri, "failed")
    plain.assert_succeeded()  # answered, got the ACK, then our BYE
    assert plain.received() == ["INVITE", "ACK", "BYE"], plain.received()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)
    assert "sip_dial_media_not_acceptable" in lab.server.stderr()
