"""An Opus baresip phone (Debian's baresip opus module) in a conference with a G.711 sipp phone and
a G.711 baresip phone, through a Bridgeline whose `rtp.codecs` lists OPUS (last: the G.711 phones
still get G.711): each hears the others (checked by spectrum, the Opus RTP decoded by libopus
itself), the Opus phone is sent Opus on the 48 kHz clock, and the others G.711.

(Mixing with G.722 is tested on the virtual clock, tests/media/test_runtime_opus.py: a second G.722
baresip phone dialled into a conference is heard some 15 dB low here, with or without Opus.)"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pytest
from sipaudio import OPUS_PT, PCMU, assert_hears
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab

OPUS_MODULE = Path("/usr/lib/baresip/modules/opus.so")
pytestmark = pytest.mark.skipif(not OPUS_MODULE.exists(), reason="Debian's baresip has no opus module here")

# baresip's opus module (registered as opus/48000/2: its stereo settings left at their defaults),
# sending in-band FEC; the WAV source and the player mono (baresip resamples to and from 48 kHz)
OPUS_CONFIG = """module          opus.so
opus_inbandfec  yes
ausrc_channels  1
auplay_channels 1
"""


def sip_config(ports: Ports) -> dict[str, Any]:
    return {"rtp": {"codecs": ["PCMU", "PCMA", "G722", "OPUS"]}}


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def test_an_opus_phone_hears_and_is_heard_by_g711_and_g722_phones(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A, codecs="opus/48000/2", extra_config=OPUS_CONFIG)
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
