"""`Lab`: one test's bench around the module's Bridgeline server: its SIP peers, the capture of their
media, the Plivo SDK and HTTP clients, and what each peer heard in a stretch of time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from e2ekit import Api, Phlo, sdk_client
from pcapkit import Capture, Datagram
from sipaudio import Heard, RtpFrame, audio, rtp_frames
from sipkit import LOOPBACK, Baresip, Ports, ProcSet, Sipp, SipServer

# Every sound source is a tone of its own (Hz), far enough from the others and their products.
TONE_A, TONE_B, TONE_C, TONE_D = 600, 1000, 1400, 1800
AGENT_HOLD, CUSTOMER_HOLD, WAIT, VOICEMAIL = 2300, 2700, 300, 3100
MUSIC = {
    "agent_hold_music": f"tone:{AGENT_HOLD}",
    "customer_hold_music": f"tone:{CUSTOMER_HOLD}",
    "wait_music": f"tone:{WAIT}",
    "voicemail_message": f"tone:{VOICEMAIL}",
}
ALL_TONES = (TONE_A, TONE_B, TONE_C, TONE_D, AGENT_HOLD, CUSTOMER_HOLD, WAIT, VOICEMAIL)

Peer = Sipp | Baresip


class Tones:
    """Tone WAV files made with sox: u-law for sipp's rtp_stream, 16-bit for baresip's aufile. A phone
    falls silent when its file ends (neither loops it): `seconds` must outlast the call."""

    def __init__(self, root: Path, seconds: int = 30) -> None:
        self.root = root
        self.seconds = seconds
        root.mkdir(parents=True, exist_ok=True)

    def _make(self, name: str, freq: int, encoding: list[str]) -> Path:
        path = self.root / name
        if not path.exists():
            argv = [
                "sox",
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                *encoding,
                str(path),
                "synth",
                str(self.seconds),
                "sine",
                str(freq),
            ]
            subprocess.run([*argv, "vol", "0.3"], check=True, capture_output=True, timeout=30)
        return path

    def ulaw(self, freq: int) -> Path:
        return self._make(f"tone{freq}-{self.seconds}s-ulaw.wav", freq, ["-e", "u-law"])

    def s16(self, freq: int) -> Path:
        return self._make(f"tone{freq}-{self.seconds}s-s16.wav", freq, ["-b", "16", "-e", "signed-integer"])


class Lab:
    def __init__(self, server: SipServer, ports: Ports, tones: Tones, work: Path) -> None:
        self.server = server
        self.ports = ports
        self.tones = tones
        self.work = work
        self.procs = ProcSet(work / "logs")
        self.sipps: list[Sipp] = []
        self.baresips: list[Baresip] = []
        self.api = Api(server)  # type: ignore[arg-type]  # duck-typed: has url and clients
        self.sdk = sdk_client(server.url)
        self._capture: Capture | None = None
        self._datagrams: list[Datagram] | None = None

    # ------------------------------------------------------------------ peers
    def sipp(self, name: str, scenario: str, **kwargs: Any) -> Sipp:
        sipp = Sipp(self.procs, self.ports, self.work, name, scenario, **kwargs)
        self.sipps.append(sipp)
        return sipp

    def sipp_phone(
        self,
        name: str,
        freq: int,
        *,
        ring_ms: int = 0,
        bye_answer_ms: int = 0,
        talk_after_ms: int = 0,
        transport: str = "u1",
        local_ip: str = LOOPBACK,
    ) -> Sipp:
        """A sipp phone (on local_ip) that rings for ring_ms, answers, and talk_after_ms after the ACK
        says freq until it gets a BYE, which it answers bye_answer_ms later."""
        substitutions = {"AUDIO_WAV": str(self.tones.ulaw(freq))}
        if bye_answer_ms:
            substitutions["<!--BYE_ANSWER_PAUSE-->"] = f'<pause milliseconds="{bye_answer_ms}"/>'
        if talk_after_ms:
            substitutions["<!--TALK_AFTER_PAUSE-->"] = f'<pause milliseconds="{talk_after_ms}"/>'
        return self.sipp(
            name,
            "uas_play.xml",
            substitutions=substitutions,
            ring_ms=ring_ms,
            transport=transport,
            local_ip=local_ip,
        )

    def baresip(
        self, name: str, freq: int, *, account: str | None = None, codecs: str = "PCMU", **kwargs: Any
    ) -> Baresip:
        wav = self.tones.s16(freq)
        phone = Baresip(
            self.procs, self.ports, self.work, name, wav, account=account, codecs=codecs, **kwargs
        )
        self.baresips.append(phone)
        return phone

    # ------------------------------------------------------------------ capture
    def capture(self, *peers: Peer, ports: tuple[int, ...] = ()) -> Capture:
        """Capture the media (and SIP) of these peers, plus any other ports given."""
        watched = set(ports)
        for peer in peers:
            watched |= peer.media_ports | {peer.sip_port}
        self._capture = Capture(self.procs, self.work, "capture", watched)
        return self._capture

    def stop_capture(self) -> list[Datagram]:
        assert self._capture is not None, "no capture running"
        if self._datagrams is None:
            self._datagrams = self._capture.stop()
        return self._datagrams

    def frames(self, peer: Peer) -> list[RtpFrame]:
        """The RTP the server sent to the peer's media ports (the capture is stopped first)."""
        return rtp_frames(self.stop_capture(), peer.media_ports, self.server.rtp_range)

    def heard(self, peer: Peer, window: tuple[float, float], label: str = "") -> Heard:
        """What the server sent to the peer's media ports during the window."""
        return Heard(audio(self.frames(peer), *window), label or f"{peer.name} in {self.relative(window)}")

    def media_packets(self, peer: Peer, start: float, end: float = float("inf")) -> int:
        return sum(1 for f in self.frames(peer) if start <= f.at < end)

    def relative(self, window: tuple[float, float]) -> str:
        first = self._datagrams[0].at if self._datagrams else window[0]
        return f"[{window[0] - first:.2f}, {window[1] - first:.2f}) s"

    @staticmethod
    def listen(seconds: float = 0.8, settle: float = 0.3) -> tuple[float, float]:
        """Let the routing settle, then let the peers talk for a while: that stretch of time."""
        time.sleep(settle)
        start = time.time()
        time.sleep(seconds)
        return start, time.time()

    # ------------------------------------------------------------------ API
    def create_phlo(
        self, dial: list[tuple[str, str]] | None = None, *, phlo_id: str | None = None, **node: Any
    ) -> Phlo:
        """A one-node PHLO whose run dials `dial` (default: {{agent}}, then {{customer}}), with every
        kind of music set to its own tone and a 5 s ring timeout unless `node` says otherwise."""
        if dial is None:
            dial = [("{{agent}}", "agent"), ("{{customer}}", "customer")]
        definition: dict[str, Any] = {
            "name": "sip-e2e",
            "nodes": [
                {"name": "Multi-Party Call_1", "type": "multi_party_call", "ring_timeout": 5, **MUSIC, **node}
            ],
            "run": {"mode": "sequential", "dial": [{"to": to, "role": role} for to, role in dial]},
        }
        if phlo_id is not None:
            definition["phlo_id"] = phlo_id
        response = self.api.http.post("/v1/phlo", json=definition)
        assert response.status_code == 201, response.text
        body = response.json()
        return Phlo(self.api, body["phlo_id"], body["nodes"][0]["node_id"])

    def mpc(self, phlo: Phlo) -> Any:
        """The SDK's node object: `client.phlo.get(phlo_id).multi_party_call(node_id)`."""
        return self.sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)

    def run(self, phlo: Phlo, **payload: str) -> Any:
        return self.sdk.phlo.get(phlo.phlo_id).run(**payload)

    @staticmethod
    def connected(
        phlo: Phlo, address: str, hears: list[str] | None = None, timeout: float = 8.0
    ) -> dict[str, Any]:
        expected: dict[str, Any] = {"status": "connected"}
        if hears is not None:
            expected["hears"] = hears
        return phlo.wait_member(address, timeout=timeout, **expected)

    @staticmethod
    def left(phlo: Phlo, address: str, reason: str, timeout: float = 8.0) -> dict[str, Any]:
        return phlo.wait_member(address, timeout=timeout, status="left", leave_reason=reason)

    def assert_ended(self, phlo: Phlo, mpc_uuid: str, *sipps: Sipp, timeout: float = 8.0) -> dict[str, Any]:
        """The conference ended with every member gone, and each sipp peer's call ended as scripted
        (for a talking phone: with a BYE it received)."""
        conference = phlo.wait_ended(mpc_uuid, timeout=timeout)
        live = [m for m in conference["members"] if m["status"] != "left"]
        assert not live, f"members still live in an ended conference: {live}"
        for sipp in sipps:
            sipp.assert_succeeded()
        live_confs = [c["mpc_uuid"] for c in phlo.instances() if c["status"] != "ended"]
        assert not live_confs, f"conferences still live: {live_confs}"
        return conference

    def assert_quiet_after(self, peers: list[Peer], moment: float) -> None:
        """No RTP went to any of the peers after `moment` (a leg that leaked would keep sending)."""
        time.sleep(0.4)
        self.stop_capture()
        for peer in peers:
            late = self.media_packets(peer, moment)
            assert late == 0, f"{late} RTP packets sent to {peer.name} after its call ended"

    # ------------------------------------------------------------------ teardown
    def close(self) -> list[str]:
        for phone in self.baresips:
            phone.control.close()
        leaked = self.procs.stop_all()
        self.api.close()
        self.sdk.session.close()
        return leaked
