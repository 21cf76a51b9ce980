"""An Opus baresip phone (Debian's baresip opus module) in a conference with a G.711 sipp phone and
a G.711 baresip phone, through a Bridgeline whose `rtp.codecs` lists OPUS (last: the G.711 phones
still get G.711): each hears the others (checked by spectrum, the Opus RTP decoded by libopus
itself), the Opus phone is sent Opus on the 48 kHz clock, and the others G.711. And an Opus phone
calling in with 40 ms packets: heard whole, and sent 40 ms packets back.

(Mixing with G.722 is tested on the virtual clock, tests/media/test_runtime_opus.py: a second G.722
baresip phone dialled into a conference here sends its own tone some 16 dB lower than the first one
does, measured on what it sends, with or without Opus, so it is not a fair third voice.)"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from sipaudio import OPUS_PT, PCMU, Heard, assert_hears, audio, rtp_frames
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab

OPUS_MODULE = Path("/usr/lib/baresip/modules/opus.so")  # Debian's baresip-core, installed by `make deps-sip`


@pytest.fixture(autouse=True)
def opus_module() -> None:
    """No Opus peer is no proof: a missing module fails the test rather than skipping it."""
    assert OPUS_MODULE.exists(), f"{OPUS_MODULE} is missing: run `make deps-sip` (baresip-core ships it)"


# baresip's opus module (registered as opus/48000/2: its stereo settings left at their defaults),
# sending in-band FEC; the WAV source and the player mono (baresip resamples to and from 48 kHz)
OPUS_CONFIG = """module          opus.so
opus_inbandfec  yes
ausrc_channels  1
auplay_channels 1
"""


NUMBER, PHLO = "+14155550177", "sip-e2e-opus"
AGENT: dict[str, int] = {}


def sip_config(ports: Ports) -> dict[str, Any]:
    AGENT["port"] = ports.take(2)
    agent = f"sip:agent@127.0.0.1:{AGENT['port']}"
    return {
        "rtp": {"codecs": ["PCMU", "PCMA", "G722", "OPUS"]},
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
        "inbound": [{"number": NUMBER, "phlo_id": PHLO, "payload": {"customer": "{{from}}", "agent": agent}}],
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_an_opus_phone_hears_and_is_heard_by_g711_phones(lab: Lab) -> None:
    agent = lab.baresip(
        "agent", TONE_A, codecs="opus/48000/2", sip_port=AGENT["port"], extra_config=OPUS_CONFIG
    )
    customer = lab.sipp_phone("customer", TONE_B, ring_ms=200)
    second = lab.baresip("second", TONE_C)  # G.711 (PCMU)
    lab.capture(agent, customer, second)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    two = lab.listen()
    lab.mpc(phlo).call(agent.uri, second.uri, "agent")
    lab.connected(phlo, second.uri, hears=[agent.uri, customer.uri])
    three = lab.listen()

    for phone in (second, customer, agent):
        lab.mpc(phlo).member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    lab.assert_quiet_after([agent, customer, second], time.time())

    to_agent = [f for f in lab.frames(agent) if f.payload_type not in (101, 102)]
    assert {f.payload_type for f in to_agent} == {OPUS_PT}
    assert {f.payload_type for f in lab.frames(customer) if f.payload_type != 101} == {PCMU}
    assert {f.payload_type for f in lab.frames(second) if f.payload_type != 101} == {PCMU}
    assert len({len(f.payload) for f in to_agent}) > 1  # variable bit rate
    assert {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(to_agent)} == {960}
    assert_hears(lab.heard(agent, two), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, two), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, three), [TONE_B, TONE_C], others(TONE_B, TONE_C))
    assert_hears(lab.heard(customer, three), [TONE_A, TONE_C], others(TONE_A, TONE_C))
    assert_hears(lab.heard(second, three), [TONE_A, TONE_B], others(TONE_A, TONE_B))


def test_an_opus_caller_sending_40_ms_packets_is_heard_and_sent_40_ms_packets(lab: Lab) -> None:
    """baresip calls in offering Opus first with a=ptime:40 (as the answerer it would follow our
    20 ms): it sends 40 ms Opus packets, which the G.711 agent hears whole, and is sent 40 ms
    packets (+1920 on the 48 kHz clock) under the number it gave Opus."""
    agent = lab.baresip("agent", TONE_A, sip_port=AGENT["port"])  # G.711 (PCMU)
    port = lab.ports.take(2)
    account = f"<sip:caller@127.0.0.1:{port}>;regint=0;answermode=auto;audio_codecs=opus/48000/2;ptime=40"
    caller = lab.baresip("caller", TONE_B, account=account, sip_port=port, extra_config=OPUS_CONFIG)
    lab.capture(agent, caller)
    phlo = lab.create_phlo(phlo_id=PHLO)
    caller_address = "sip:caller@127.0.0.1"  # the member address of an inbound SIP caller

    caller.command("dial", f"sip:{NUMBER}@{lab.server.sip_address}")
    view = lab.connected(phlo, agent.uri, hears=[caller_address])
    lab.connected(phlo, caller_address, hears=[agent.uri])
    talking = lab.listen(1.5)
    for member in (agent.uri, caller_address):
        lab.mpc(phlo).member(member).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"])
    caller.wait_event("CALL_CLOSED")

    to_caller = [f for f in lab.frames(caller) if f.payload_type < 100 or f.payload_type > 102]
    numbers = {f.payload_type for f in to_caller}
    assert len(numbers) == 1 and numbers != {PCMU}, numbers  # one number, baresip's for Opus
    (opus_pt,) = numbers
    assert {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(to_caller)} == {1920}
    from_caller = [
        f
        for f in rtp_frames(lab.stop_capture(), set(lab.server.rtp_range), caller.media_ports)
        if f.payload_type == opus_pt
    ]
    assert len(from_caller) > 20
    assert {(b.timestamp - a.timestamp) & 0xFFFF_FFFF for a, b in itertools.pairwise(from_caller)} == {1920}
    heard_by_caller = Heard(audio(to_caller, *talking, opus_pt=opus_pt), "caller (Opus, 40 ms)")
    assert_hears(heard_by_caller, [TONE_A], others(TONE_A))
    assert_hears(lab.heard(agent, talking), [TONE_B], others(TONE_B))
