"""A peer that puts the call on hold itself (RFC 3264 re-INVITEs), and a burst of malformed SIP."""

from __future__ import annotations

import random
import re
import socket
import time
from typing import Any

from pcapkit import Datagram, sip_messages
from sipaudio import assert_hears
from sipkit import Ports
from siplab import ALL_TONES, TONE_A, TONE_B, TONE_C, Lab


def sip_config(ports: Ports) -> dict[str, Any]:
    # A trunk on loopback makes INVITEs from 127.0.0.1 trusted, so malformed ones get past digest
    # authentication into SDP and dialog handling; nothing listens on its port.
    return {
        "domain": "robust.test",
        "endpoints": {"bob": "bob-secret"},
        "trunk": {"proxy": f"127.0.0.1:{ports.take()}", "domain": "trunk.test"},
    }


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def cseq_of(message: bytes) -> str:
    found = re.search(rb"^CSeq:\s*(\d+ \w+)", message, re.MULTILINE | re.IGNORECASE)
    return found.group(1).decode() if found else ""


def test_peer_hold_reinvite_is_answered_recvonly_and_no_rtp_is_sent_while_held(lab: Lab) -> None:
    agent = lab.baresip("agent", TONE_A)
    holder = lab.sipp(
        "holder",
        "uas_hold.xml",
        substitutions={
            "AUDIO_WAV": str(lab.tones.ulaw(TONE_B)),
            "HOLD_AFTER_MS": "1200",
            "HELD_MS": "1500",
            "TALK_MS": "1200",
        },
    )
    lab.capture(agent, holder)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=holder.uri)
    mpc_uuid = lab.connected(phlo, holder.uri, hears=[agent.uri])["mpc_uuid"]

    holder.assert_succeeded(timeout=15)  # both re-INVITEs answered with the expected direction
    lab.left(phlo, holder.uri, "remote_hangup")
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid)
    datagrams = lab.stop_capture()

    def at(first_line: str, cseq: str, *, to_holder: bool) -> Datagram:
        for d, line in sip_messages(datagrams, holder.sip_port):
            if (
                line.startswith(first_line)
                and cseq_of(d.payload) == cseq
                and (d.dport == holder.sip_port) == to_holder
            ):
                return d
        raise AssertionError(f"no {first_line} {cseq} in the capture")

    hold_ok = at("SIP/2.0 200", "100 INVITE", to_holder=True)
    resume = at("INVITE ", "101 INVITE", to_holder=False)
    resume_ok = at("SIP/2.0 200", "101 INVITE", to_holder=True)
    bye = at("BYE ", "102 BYE", to_holder=False)
    assert b"a=recvonly" in hold_ok.payload, hold_ok.payload.decode()
    assert b"a=sendrecv" in resume_ok.payload, resume_ok.payload.decode()

    frames = lab.frames(holder)
    assert frames, "no RTP reached the phone"
    first_rtp = min(f.at for f in frames)
    before = (first_rtp + 0.3, first_rtp + 1.0)
    held = (hold_ok.at + 0.06, resume.at)
    after = (resume_ok.at + 0.3, bye.at)
    assert lab.media_packets(holder, *held) == 0, "RTP was sent to a peer that put the call on hold"
    assert_hears(lab.heard(holder, before), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(holder, after), [TONE_A], others(TONE_A))
    # A sendonly peer still talks: the agent hears it all along.
    assert_hears(lab.heard(agent, (hold_ok.at + 0.3, resume.at)), [TONE_B], others(TONE_B))


def test_no_rtp_follows_a_bye_even_when_the_phone_is_slow_to_answer_it(lab: Lab) -> None:
    """RFC 3261 15.1.1: the session ends when the BYE is sent, not when its 200 comes back."""
    agent = lab.sipp_phone("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_C, bye_answer_ms=1200)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]
    time.sleep(0.5)

    lab.mpc(phlo).member(customer.uri).hangup()
    customer.assert_succeeded()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent)
    messages = sip_messages(lab.stop_capture(), customer.sip_port)
    byes = [d for d, line in messages if line.startswith("BYE ")]
    answer = next(
        d for d, line in messages if line.startswith("SIP/2.0 200") and cseq_of(d.payload).endswith("BYE")
    )
    assert len(byes) >= 2, "the phone answered the BYE before its first retransmission"
    assert lab.media_packets(customer, byes[0].at - 0.5, byes[0].at) > 0, "no RTP before the BYE"
    late = lab.media_packets(customer, byes[0].at + 0.005, answer.at)
    assert late == 0, f"{late} RTP packets sent after the BYE, while waiting for its 200"


# --------------------------------------------------------------------------- malformed SIP
def invite(
    target: str, source: int, *, call_id: str, body: bytes | None = None, headers: list[str] | None = None
) -> bytes:
    sdp = (
        body
        if body is not None
        else (
            b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    )
    lines = (
        headers
        if headers is not None
        else [
            f"Via: SIP/2.0/UDP 127.0.0.1:{source};rport;branch=z9hG4bK{call_id}",
            "From: <sip:+14155550000@127.0.0.1>;tag=f" + call_id,
            f"To: <sip:+14155559999@{target}>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:x@127.0.0.1:{source}>",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
        ]
    )
    head = f"INVITE sip:+14155559999@{target} SIP/2.0\r\n" + "".join(f"{h}\r\n" for h in lines)
    return head.encode() + f"Content-Length: {len(sdp)}\r\n\r\n".encode() + sdp


def malformed_burst(target: str, source: int, rng: random.Random) -> list[bytes]:
    """About 500 datagrams: random bytes, truncated and oversized messages, broken headers, bad SDP,
    stray responses, and syntactically fine INVITEs for a number nobody routes."""
    good = invite(target, source, call_id="good0")
    out: list[bytes] = []
    out += [rng.randbytes(rng.randint(1, 1400)) for _ in range(120)]
    for i in range(120):
        out.append(invite(target, source, call_id=f"cut{i}")[: rng.randint(1, len(good) - 1)])
    for i in range(60):  # one byte flipped somewhere
        data = bytearray(invite(target, source, call_id=f"flip{i}"))
        data[rng.randrange(len(data))] = rng.randrange(256)
        out.append(bytes(data))
    out += [
        # Oversized, as far as UDP goes (65507 bytes): a body far past its Content-Length, a 65 KB
        # Request-URI, 1300 Via headers.
        good + b"x" * 60000,
        b"INVITE sip:a@" + b"b" * 65000 + b" SIP/2.0\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\n" + b"Via: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKv\r\n" * 1300 + b"\r\n",
        b"\r\n\r\n",
        b"\x00" * 512,
        b"SIP/2.0 200 OK\r\n\r\n",
        b"SIP/2.0 999 Whatever\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnone\r\n"
        b"CSeq: 1 INVITE\r\n\r\n",
        b"INVITE  SIP/2.0\r\n\r\n",
        f"FOO sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{source};branch=z9hG4bKfoo\r\n".encode()
        + b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: foo\r\nCSeq: 1 FOO\r\n"
        b"Content-Length: 0\r\n\r\n",
    ]
    broken_headers = [
        ("Call-ID: ", "X-No-Call-ID: 1"),
        ("CSeq: 1 INVITE", "CSeq: abc INVITE"),
        ("CSeq: 1 INVITE", "CSeq: 1 REGISTER"),
        ("CSeq: 1 INVITE", "CSeq: 99999999999999999999 INVITE"),
        ("Via: SIP/2.0/UDP", "Via: garbage"),
        ("Via: SIP/2.0/UDP 127.0.0.1:", "Via: SIP/2.0/UDP 127.0.0.1:99999"),
        ("From: <sip:+14155550000@127.0.0.1>;tag=", "From: <<<>>>;tag="),
        ("To: <", "To: <tel:"),
        ("Contact: <sip:x@", "Contact: *, <sip:x@"),
        ("Contact: <sip:x@", "Contact: <sip:a@b>, <sip:x@"),
        ("Max-Forwards: 70", "Max-Forwards: -1"),
        ("Content-Type: application/sdp", "Content-Type: text/plain"),
        ("Max-Forwards: 70", "Require: precondition"),  # 100rel and timer are implemented
        ("Max-Forwards: 70", "Session-Expires: soon;refresher=uac"),
        ("Max-Forwards: 70", "Min-SE: 99999999999999999999"),
        ("Max-Forwards: 70", "Header-Without-Colon"),
        ("Max-Forwards: 70", "X-Binary: \xff\xfe"),
    ]
    for i in range(150):
        old, new = broken_headers[i % len(broken_headers)]
        data = invite(target, source, call_id=f"hdr{i}").decode("latin-1").replace(old, new, 1)
        out.append(data.encode("latin-1"))
    no_common_codec = (  # G.729 only: answered 488
        b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 18\r\n"
    )
    # b"" is a late offer (no SDP), accepted: this number has no route, so it is answered 404.
    video_only = b"v=0\r\nm=video 1 RTP/AVP 31\r\n"
    bad_bodies = [b"", b"v=0\r\n", b"garbage", video_only, b"\xff" * 300, no_common_codec]
    for i in range(25):
        out.append(invite(target, source, call_id=f"sdp{i}", body=bad_bodies[i % len(bad_bodies)]))
    for i in range(10):
        data = invite(target, source, call_id=f"len{i}").replace(b"Content-Length: ", b"Content-Length: 9", 1)
        out.append(data)
    for i in range(10):  # well formed, but no inbound route for the number: answered 404
        out.append(invite(target, source, call_id=f"noroute{i}"))
    rng.shuffle(out)
    return out


def test_burst_of_malformed_sip_leaves_the_server_answering_the_next_call(lab: Lab) -> None:
    rng = random.Random(20261121)
    target = lab.server.sip_address
    host, port = target.rsplit(":", 1)
    answered: dict[str, set[str]] = {}  # status line -> Call-IDs answered with it

    def drain(sock: socket.socket) -> None:
        while True:
            try:
                response = sock.recv(65535)
            except BlockingIOError:
                return
            status = response.split(b"\r\n", 1)[0].decode(errors="replace")
            call_id = re.search(rb"^Call-ID:\s*(\S+)", response, re.MULTILINE)
            answered.setdefault(status, set()).add(call_id.group(1).decode() if call_id else "")

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        burst = malformed_burst(target, sock.getsockname()[1], rng)
        assert len(burst) >= 490
        for datagram in burst:
            sock.sendto(datagram, (host, int(port)))
            # 1 ms apart: sent back to back, most of them would overflow the socket's receive
            # buffer and be dropped by the kernel before the server sees them.
            time.sleep(0.001)
            drain(sock)
        routed = {f"noroute{i}" for i in range(10)}

        def all_answered() -> bool:
            statuses = {status.split(" ")[1] for status in answered}
            return (
                {"400", "404", "415", "420", "488"} <= statuses
                and routed <= answered.get("SIP/2.0 404 Not Found", set())
                and len(set().union(*answered.values())) >= 200
            )

        # The last answers, until what the assertions below want has come (or 5 s have passed).
        deadline = time.monotonic() + 5.0
        while not all_answered() and time.monotonic() < deadline:
            drain(sock)
            time.sleep(0.01)

    statuses = {status.split(" ")[1] for status in answered}
    assert {"400", "404", "415", "420", "488"} <= statuses, answered.keys()
    assert routed <= answered.get("SIP/2.0 404 Not Found", set()), (
        "well-formed INVITEs amid the burst went unanswered"
    )
    assert len(set().union(*answered.values())) >= 200, (
        f"only {len(set().union(*answered.values()))} answered"
    )
    assert lab.server.healthy()

    agent = lab.sipp_phone("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_C)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    mpc_uuid = lab.connected(phlo, customer.uri, hears=[agent.uri])["mpc_uuid"]
    talking = lab.listen()
    lab.mpc(phlo).member(agent.uri).hangup()
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, mpc_uuid, agent, customer)

    assert_hears(lab.heard(agent, talking), [TONE_C], others(TONE_C))
    assert_hears(lab.heard(customer, talking), [TONE_A], others(TONE_A))
    assert lab.server.healthy()
