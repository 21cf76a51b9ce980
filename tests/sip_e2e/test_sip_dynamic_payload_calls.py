"""A caller whose offer numbers PCMU as a dynamic payload type (96) and asks for a 25 ms ptime, which
the media runtime cannot send: the call is answered with 96 and 20 ms, and both sides hear each other
(the server sends type 96 and reads the caller's 96 as PCMU). sipp places the call; it cannot stream
a dynamic type, so the test is the caller's RTP end (a UDP socket the server latches to)."""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path
from typing import Any

from sipaudio import PCMU, Heard, RtpFrame, assert_hears, audio
from sipkit import Ports, wait_for
from siplab import ALL_TONES, TONE_A, TONE_B, Lab

NUMBER, PHLO_ID = "+14155550190", "sip-e2e-dynamic-pt"
CALLER = "+14155551235"
AGENT: dict[str, int] = {}
DYNAMIC = 96


def sip_config(ports: Ports) -> dict[str, Any]:
    AGENT["port"] = ports.take()
    agent = f"sip:agent@127.0.0.1:{AGENT['port']}"
    return {
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
        "inbound": [
            {"number": NUMBER, "phlo_id": PHLO_ID, "payload": {"customer": "{{from}}", "agent": agent}}
        ],
    }


def ulaw_samples(wav: Path) -> bytes:
    data = wav.read_bytes()
    at = data.index(b"data") + 8
    return data[at:]


def talk(server_port: int, codes: bytes, seconds: float) -> list[RtpFrame]:
    """Send 20 ms packets of type 96 to the server's RTP port and keep what comes back."""
    heard: list[RtpFrame] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.005)
        start = time.time()
        for n in range(int(seconds / 0.02)):
            chunk = codes[(n * 160) % (len(codes) - 160) :][:160]
            header = struct.pack("!BBHII", 0x80, DYNAMIC, n & 0xFFFF, n * 160, 0x0D0D0D0D)
            sock.sendto(header + chunk, ("127.0.0.1", server_port))
            deadline = start + (n + 1) * 0.02
            while (left := deadline - time.time()) > 0:
                sock.settimeout(left)
                try:
                    data = sock.recv(2048)
                except TimeoutError:
                    break
                _, b1, seq, _, ssrc = struct.unpack_from("!BBHII", data)
                heard.append(RtpFrame(time.time(), server_port, 0, b1 & 0x7F, seq, ssrc, data[12:]))
    return heard


def test_a_dynamic_payload_type_and_an_odd_ptime_still_talk(lab: Lab) -> None:
    agent = lab.sipp(
        "agent",
        "uas_play.xml",
        substitutions={"AUDIO_WAV": str(lab.tones.ulaw(TONE_A))},
        sip_port=AGENT["port"],
    )
    phlo = lab.create_phlo(phlo_id=PHLO_ID)
    caller = lab.sipp(
        "caller",
        "uac_dynamic_pt.xml",
        substitutions={"CALLER_NUMBER": CALLER},
        remote=lab.server.sip_address,
        service=NUMBER,
        user=CALLER,
    )
    lab.capture(agent)
    view = lab.connected(phlo, CALLER, hears=[agent.uri])
    ok = next(m for m in caller.received_messages() if m.startswith("SIP/2.0 200"))
    assert re.search(r"^m=audio \d+ RTP/AVP 96\r?$", ok, re.MULTILINE), ok
    assert re.search(r"^a=rtpmap:96 PCMU/8000\r?$", ok, re.MULTILINE), ok
    assert re.search(r"^a=ptime:20\r?$", ok, re.MULTILINE), ok
    server_port = int(re.search(r"^m=audio (\d+) ", ok, re.MULTILINE).group(1))  # type: ignore[union-attr]

    start = time.time()
    frames = talk(server_port, ulaw_samples(lab.tones.ulaw(TONE_B)), 2.0)
    window = (start + 0.8, time.time())
    assert phlo.member_action(CALLER, "hangup").status_code == 201
    caller.assert_succeeded()
    assert phlo.member_action(agent.uri, "hangup").status_code == 201
    lab.assert_ended(phlo, view["mpc_uuid"], agent)

    others = [f for f in ALL_TONES if f not in (TONE_A, TONE_B)]
    assert_hears(lab.heard(agent, window), [TONE_B], [TONE_A, *others])  # the caller's 96 read as PCMU
    to_caller = [f for f in frames if window[0] <= f.at < window[1]]
    assert to_caller and {f.payload_type for f in to_caller} == {DYNAMIC}
    assert all(len(f.payload) == 160 for f in to_caller)  # 20 ms, not the 25 asked for
    as_pcmu = [RtpFrame(f.at, f.sport, f.dport, PCMU, f.sequence, f.ssrc, f.payload) for f in to_caller]
    assert_hears(Heard(audio(as_pcmu, *window), "caller, 96 as PCMU"), [TONE_A], [TONE_B, *others])
    wait_for(
        lambda: lab.server.metrics()["bridgeline_sip_rtp_ports_in_use"] == 0, 5, "the RTP ports to be freed"
    )
