"""An answered call leg's dialog as a plain value: what a restarted (or another) node needs to take
the call back with a target-refresh re-INVITE (RFC 3261 12.2, recovery.py).

`SavedDialog.to_json()` gives a dict of str, int, bool, None and lists only, which the carrier keeps
in its store; `SavedDialog.from_json` reads it back and raises `SavedDialogError` for anything it
cannot use (a row written by another version, a damaged one). No SRTP key is kept: the re-offer
carries a fresh one (a restarted sender's packet index starts over, and RFC 3711 9.1 forbids
using a master key again with the same index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .dialog import Dialog, DialogId
from .headers import NameAddress, parse_name_address
from .offer_answer import Codec, make_offer
from .sdes import CryptoSuite, SrtpConfig, SrtpParams, SrtpPolicy
from .sdp import SessionDescription
from .syntax import SipParseError
from .transaction import Destination, Target, Transport, destination, transport_of
from .uri import URI, parse_uri

FORMAT: Final = 1  # bumped when the JSON shape changes; older rows are refused, not misread
SAVP: Final = "RTP/SAVP"


class SavedDialogError(ValueError):
    """A stored dialog that cannot be read back."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Our SDP `o=` line's username, session id and version (RFC 4566 5.2): a re-offer keeps the
    session id and raises the version (RFC 3264 8)."""

    username: str
    session_id: int
    version: int


@dataclass(frozen=True, slots=True)
class SavedDialog:
    outbound: bool  # we sent the dialog-creating INVITE (UAC) or answered it (UAS)
    call_id: str
    local: str  # our From in requests we send, with our tag (name-addr text)
    remote: str  # our To, with the peer's tag
    remote_target: str  # the peer's Contact URI, as last refreshed
    route_set: tuple[str, ...]
    local_seq: int  # the CSeq of our last request in the dialog
    remote_seq: int | None
    peer: Destination  # where the dialog's requests go without a route set (the INVITE's source)
    origin: Origin
    codec: Codec  # the audio codec in use: offered first again
    srtp_suite: CryptoSuite | None  # the call was encrypted with this suite
    srtp_required: bool  # our m-line was RTP/SAVP (else RTP/AVP with crypto lines: best effort)
    session_interval: int | None  # RFC 4028 interval in force, if a session timer ran

    @property
    def dialog_id(self) -> DialogId:
        local, remote = parse_name_address(self.local), parse_name_address(self.remote)
        return DialogId(self.call_id, local.tag or "", remote.tag or "")

    def to_json(self) -> dict[str, Any]:
        peer = self.peer
        return {
            "format": FORMAT,
            "outbound": self.outbound,
            "call_id": self.call_id,
            "local": self.local,
            "remote": self.remote,
            "remote_target": self.remote_target,
            "route_set": list(self.route_set),
            "local_seq": self.local_seq,
            "remote_seq": self.remote_seq,
            "peer": {
                "transport": transport_of(peer).value,
                "host": peer[0],
                "port": peer[1],
                "tls_name": peer.tls_name if isinstance(peer, Target) else None,
            },
            "origin": {
                "username": self.origin.username,
                # text: o= numbers may exceed 64 bits, which JSON encoders need not carry
                "session_id": str(self.origin.session_id),
                "version": str(self.origin.version),
            },
            "codec": {
                "encoding": self.codec.encoding,
                "clock_rate": self.codec.clock_rate,
                "payload_type": self.codec.payload_type,
                "channels": self.codec.channels,
                "fmtp": self.codec.fmtp,
            },
            "srtp_suite": self.srtp_suite.value if self.srtp_suite else None,
            "srtp_required": self.srtp_required,
            "session_interval": self.session_interval,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SavedDialog:
        try:
            if raw["format"] != FORMAT:
                raise SavedDialogError(f"saved dialog format {raw['format']!r}, expected {FORMAT}")
            peer, origin, codec = raw["peer"], raw["origin"], raw["codec"]
            transport = Transport(peer["transport"])
            if peer["tls_name"] is not None and transport is not Transport.TLS:
                raise SavedDialogError("a TLS name for a peer not reached over TLS")
            saved = cls(
                outbound=_bool(raw["outbound"]),
                call_id=_text(raw["call_id"]),
                local=_text(raw["local"]),
                remote=_text(raw["remote"]),
                remote_target=_text(raw["remote_target"]),
                route_set=tuple(_text(r) for r in _list(raw["route_set"])),
                local_seq=_int(raw["local_seq"], 0, 2**31 - 1),
                remote_seq=None if raw["remote_seq"] is None else _int(raw["remote_seq"], 0, 2**32 - 1),
                peer=destination(
                    transport,
                    _text(peer["host"]),
                    _int(peer["port"], 1, 65535),
                    tls_name=_optional_text(peer["tls_name"]),
                ),
                origin=Origin(
                    _text(origin["username"]), _digits(origin["session_id"]), _digits(origin["version"])
                ),
                codec=Codec(
                    _text(codec["encoding"]),
                    _int(codec["clock_rate"], 1),
                    _int(codec["payload_type"], 0, 127),
                    _int(codec["channels"], 1, 8),
                    _optional_text(codec["fmtp"]),
                ),
                srtp_suite=None if raw["srtp_suite"] is None else CryptoSuite(raw["srtp_suite"]),
                srtp_required=_bool(raw["srtp_required"]),
                session_interval=(
                    None if raw["session_interval"] is None else _int(raw["session_interval"], 1)
                ),
            )
            saved.parsed()  # every header value must parse, now rather than mid-recovery
        except SavedDialogError:
            raise
        except (KeyError, TypeError, ValueError, SipParseError) as exc:
            raise SavedDialogError(f"unreadable saved dialog: {exc!r}"[:300]) from None
        return saved

    def parsed(self) -> tuple[NameAddress, NameAddress, URI, list[NameAddress]]:
        """(local, remote, remote target, route set) parsed; raises SipParseError."""
        local, remote = parse_name_address(self.local), parse_name_address(self.remote)
        if not local.tag:
            raise SavedDialogError("our own tag is missing")
        return local, remote, parse_uri(self.remote_target), [parse_name_address(r) for r in self.route_set]


def save_dialog(
    *,
    outbound: bool,
    dialog: Dialog,
    peer: Destination,
    local_sdp: SessionDescription,
    codec: Codec,
    srtp: SrtpParams | None,
    session_interval: int | None,
) -> SavedDialog | None:
    """The saved form of a confirmed dialog; None when our SDP has no active audio stream."""
    audio = next((m for m in local_sdp.media if m.media == "audio" and m.port != 0), None)
    if audio is None:
        return None
    origin = local_sdp.origin
    return SavedDialog(
        outbound=outbound,
        call_id=dialog.call_id,
        local=str(dialog.local),
        remote=str(dialog.remote),
        remote_target=str(dialog.remote_target),
        route_set=tuple(str(r) for r in dialog.route_set),
        local_seq=dialog.local_seq,
        remote_seq=dialog.remote_seq,
        peer=peer,
        origin=Origin(origin.username, origin.session_id, origin.version),
        codec=codec,
        srtp_suite=srtp.suite if srtp else None,
        srtp_required=audio.proto.upper() == SAVP,
        session_interval=session_interval,
    )


def recovery_offer(
    saved: SavedDialog, ip: str, port: int, codecs: Sequence[Codec], srtp_key: bytes | None
) -> SessionDescription:
    """Our re-offer for a recovered leg (RFC 3264 8): our new RTP address, the same o= session id
    with the version raised, the codec in use first (our parameters, its agreed payload type), then the others
    of `codecs`; an encrypted call offers its suite again with `srtp_key` (fresh, see module doc)."""
    current = saved.codec
    # Our own entry for it (our fmtp says what we want to receive), under the agreed number.
    ours = next((c for c in codecs if c.matches(current.rtpmap)), None)
    if ours is not None:
        current = dataclasses.replace(ours, payload_type=current.payload_type)
    ordered = [current] + [
        c for c in codecs if not c.matches(current.rtpmap) and c.payload_type != current.payload_type
    ]
    srtp = SrtpConfig(SrtpPolicy.OFF)
    if saved.srtp_suite is not None and srtp_key is not None:
        policy = SrtpPolicy.REQUIRED if saved.srtp_required else SrtpPolicy.OFFERED
        srtp = SrtpConfig(policy, (srtp_key,), (saved.srtp_suite,))
    origin = saved.origin
    return make_offer(
        ip, port, origin.session_id, origin.version + 1, ordered, username=origin.username, srtp=srtp
    )


def _text(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise SavedDialogError(f"expected a short non-empty string, got {type(value).__name__}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)


def _int(value: object, low: int, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise SavedDialogError(f"integer out of range: {value!r}"[:80])
    if high is not None and value > high:
        raise SavedDialogError(f"integer out of range: {value!r}"[:80])
    return value


def _digits(value: object) -> int:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > 40:
        raise SavedDialogError(f"expected a decimal number, got {value!r}"[:80])
    if value != str(int(value)):  # as written: no leading zero
        raise SavedDialogError(f"expected a decimal number, got {value!r}"[:80])
    return int(value)


def _list(value: object) -> list[object]:
    if not isinstance(value, list) or len(value) > 32:
        raise SavedDialogError(f"expected a short list, got {type(value).__name__}")
    return value


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise SavedDialogError(f"expected a boolean, got {type(value).__name__}")
    return value
