"""SDP offer/answer (RFC 3264) for one audio stream: G.711, G.722 or Opus, plus RFC 4733 telephone events,
plain or SRTP-protected with SDES keys (RFC 4568, `sdes`).

We use the first usable `m=audio` line (RTP/AVP, or RTP/SAVP when the call's SRTP policy allows)
and reject every other m-line with port 0, which RFC 3264 section 6 allows. Either side's outcome
is a `MediaParams`: what the RTP engine needs, keys included.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from .sdes import OFF, Crypto, SrtpConfig, SrtpParams, SrtpPolicy, crypto_lines
from .sdp import Connection, Direction, Media, Origin, RtpMap, SdpParseError, SessionDescription

DEFAULT_PTIME: Final = 20
# The packet times the media runtime sends: whole 10 ms frames up to 120 ms. A peer's a=ptime is a
# wish (RFC 4566 6), not a condition: any other value is answered, and sent, at DEFAULT_PTIME.
SENDABLE_PTIMES: Final = frozenset(range(10, 121, 10))
# Opus sends one frame per packet, and an Opus frame lasts 10, 20, 40, 60, 80, 100 or 120 ms.
OPUS_PTIMES: Final = frozenset({10, 20, 40, 60, 80, 100, 120})
# RFC 3551's static numbers, by which the media runtime knows its codecs whatever number the SDP
# gave them (a peer may map PCMA or G722 to a dynamic type, RFC 3551 3). Opus has none: 256 is the
# media runtime's own key for it (media/opus.py CODEC_ID), outside RTP's 7 bits.
_STATIC_TYPES: Final = {"pcmu": 0, "pcma": 8, "g722": 9, "opus": 256}
_OPUS: Final = "opus"
_TELEPHONE_EVENT: Final = "telephone-event"
AVP: Final = "RTP/AVP"
SAVP: Final = "RTP/SAVP"


class NegotiationError(ValueError):
    """No acceptable audio stream. For an incoming offer, answer 488 Not Acceptable Here, with a
    Warning of `warning_code` (RFC 3261 20.43: 301 for an address family we cannot reach, else 399)."""

    status: Final = 488

    def __init__(self, reason: str, warning_code: int = 399) -> None:
        super().__init__(reason)
        self.warning_code = warning_code


# RFC 3261 20.43's Warning for "the session description contains network addresses in formats not
# available": a c= line of the other IP family than our RTP sockets.
INCOMPATIBLE_ADDRESS_FORMATS: Final = 301
_FAMILY_NAMES: Final = {"IP4": "IPv4", "IP6": "IPv6"}


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format. `payload_type` is our preference in offers; after negotiation it is
    the number agreed on the wire (for dynamic types, the offerer's)."""

    encoding: str
    clock_rate: int
    payload_type: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def is_telephone_event(self) -> bool:
        return self.encoding.lower() == _TELEPHONE_EVENT

    @property
    def rtpmap(self) -> RtpMap:
        return RtpMap(self.encoding, self.clock_rate, self.channels)

    @property
    def static_payload_type(self) -> int:
        """RFC 3551's number for this encoding (Opus: the media runtime's own key, 256), or the
        negotiated one when it has none."""
        return _STATIC_TYPES.get(self.encoding.lower(), self.payload_type)

    @property
    def is_opus(self) -> bool:
        return self.encoding.lower() == _OPUS

    def matches(self, rtpmap: RtpMap) -> bool:
        """Same encoding (case-insensitive, RFC 4855 section 3), clock rate and channel count."""
        return (
            rtpmap.encoding.lower() == self.encoding.lower()
            and rtpmap.clock_rate == self.clock_rate
            and rtpmap.channels == self.channels
        )


PCMU: Final = Codec("PCMU", 8000, 0)
PCMA: Final = Codec("PCMA", 8000, 8)
# 16 kHz audio, but "G722/8000" on the wire (RFC 3551 4.5.2): so telephone-event/8000 pairs with it.
G722: Final = Codec("G722", 8000, 9)
# RFC 7587: always "opus/48000/2" (the RTP clock; the channels say only that stereo may be sent).
# Our fmtp says what we like to receive (RFC 7587 7.1): no more than 16 kHz audio (we decode and mix
# at 16 kHz), mono, and in-band FEC (which we decode: media/opus_jitter.py); the sprop- parameters
# say what we send. The peer's own fmtp shapes our encoder (media/opus.py OpusParams).
OPUS: Final = Codec(
    "opus",
    48000,
    111,
    channels=2,
    fmtp="maxplaybackrate=16000;sprop-maxcapturerate=16000;stereo=0;sprop-stereo=0;useinbandfec=1",
)
TELEPHONE_EVENT: Final = Codec(_TELEPHONE_EVENT, 8000, 101, fmtp="0-16")
# RFC 4733 events ride the audio codec's clock: Opus legs get their own, at 48 kHz.
TELEPHONE_EVENT_48K: Final = Codec(_TELEPHONE_EVENT, 48000, 102, fmtp="0-16")
DEFAULT_CODECS: Final = (PCMU, PCMA, TELEPHONE_EVENT)
# What the media runtime carries, by name in upper case (as `rtp.codecs` names them).
AUDIO_CODECS: Final = {c.encoding.upper(): c for c in (PCMU, PCMA, G722, OPUS)}


def codecs_by_name(names: Sequence[str]) -> tuple[Codec, ...]:
    """Audio codecs in the given preference order (names of AUDIO_CODECS, any case), followed by
    telephone-event (and its 48 kHz twin when Opus is named); ValueError for an unknown or repeated
    name, or none."""
    chosen = [AUDIO_CODECS.get(name.upper()) for name in names]
    if not chosen:
        raise ValueError("at least one audio codec is needed")
    if None in chosen:
        raise ValueError(f"unknown codec in {list(names)}: known are {', '.join(AUDIO_CODECS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"a codec is named twice in {list(names)}")
    events = (TELEPHONE_EVENT, TELEPHONE_EVENT_48K) if OPUS in chosen else (TELEPHONE_EVENT,)
    return (*(c for c in chosen if c is not None), *events)


@dataclass(frozen=True, slots=True)
class MediaParams:
    """The negotiated stream. `direction` is ours: `sends` means we may send RTP to the remote
    address, `receives` that the peer may send to us."""

    codec: Codec
    telephone_event: Codec | None
    remote_address: str
    remote_port: int
    direction: Direction
    ptime: int
    remote_ptime: int | None
    index: int  # position of the m-line in the SDP
    srtp: SrtpParams | None = None  # None: plain RTP


def make_offer(
    local_ip: str,
    port: int,
    session_id: int,
    version: int,
    codecs: Sequence[Codec] = DEFAULT_CODECS,
    *,
    direction: Direction = Direction.SENDRECV,
    ptime: int = DEFAULT_PTIME,
    username: str = "-",
    srtp: SrtpConfig = OFF,
) -> SessionDescription:
    """An offer with one audio stream listing codecs in preference order (RFC 3264 section 5).
    Hold is `direction=SENDONLY` (or INACTIVE), the RFC 3264 8.4 way. SRTP `required` offers
    RTP/SAVP, `offered` RTP/AVP (best effort: a peer without SRTP ignores the crypto lines and
    answers plain RTP/AVP, RFC 4568 section 7.5), both with one crypto line per suite."""
    if len({c.payload_type for c in codecs}) != len(codecs):
        raise ValueError("codecs must have distinct payload types")
    sdp = _session(local_ip, session_id, version, username, ["0 0"])
    proto = SAVP if srtp.policy is SrtpPolicy.REQUIRED else AVP
    crypto = srtp.offer_lines() if srtp.enabled else []
    sdp.media.append(_audio_section(port, codecs, direction, ptime, proto, crypto))
    return sdp


def answer_offer(
    offer: SessionDescription,
    local_ip: str,
    port: int,
    session_id: int,
    version: int,
    supported: Sequence[Codec] = DEFAULT_CODECS,
    *,
    direction: Direction = Direction.SENDRECV,
    username: str = "-",
    srtp: SrtpConfig = OFF,
) -> tuple[SessionDescription, MediaParams]:
    """Answer an offer (RFC 3264 section 6).

    The codec is the first format in the offer's order that we support, keeping the offerer's
    payload type; telephone-event is added when both sides have it at the same clock rate. The
    answer's direction mirrors the offer's, narrowed by `direction` (our own wish, e.g. SENDONLY
    to hold). An offer with `c=0.0.0.0` is old-style hold: the offerer will not receive, so we
    answer as if it said sendonly. We take the offer's ptime when we can send it, else 20 ms.
    SRTP (`srtp`): a stream with a crypto line we support is answered with that line's tag and
    suite and our own key (RFC 4568 section 7.1.3), whatever its profile, unless the policy is
    `off`; RTP/SAVP without such a line is declined, and so is a plain stream when the policy is
    `required`. One server's RTP speaks one IP family, `local_ip`'s: a stream whose address is of
    the other is declined (Warning 301). Raises NegotiationError when no audio stream is
    acceptable, SdpParseError when the one we would use has a line that did not parse (see
    `check_offer`)."""
    check_offer(offer, supported, srtp)
    answer = _session(local_ip, session_id, version, username, list(offer.times))
    result: MediaParams | None = None
    refusal = _Refusal()
    ours_family = address_family(local_ip)
    for index, media in enumerate(offer.media):
        connection = offer.connection_for(media)
        choice = _choose(media, supported) if result is None and _is_rtp_audio(media) else None
        if choice is not None and connection is not None and not _reachable(connection, ours_family):
            refusal.refuse(_family_refusal(connection, ours_family), INCOMPATIBLE_ADDRESS_FORMATS)
            choice = None
        crypto = _crypto_for(media, srtp, refusal) if choice is not None else None
        if choice is None or connection is None or crypto is None:
            answer.media.append(Media(media.media, 0, media.proto, list(media.formats)))
            continue
        codec, event = choice
        ours = _as_seen_by_peer(offer.direction_for(media), connection) & direction
        remote_ptime = offer.ptime_for(media)
        ptime = _sendable(remote_ptime, codec) or DEFAULT_PTIME
        theirs = crypto if isinstance(crypto, Crypto) else None
        lines = [] if theirs is None else [Crypto(theirs.tag, theirs.suite, srtp.key_for(theirs.suite))]
        # Opus's fmtp is each side's own (what it likes to receive): ours goes in the answer.
        answered = dataclasses.replace(codec, fmtp=OPUS.fmtp) if codec.is_opus else codec
        codecs = [answered] + ([event] if event else [])
        answer.media.append(_audio_section(port, codecs, ours, ptime, media.proto, lines))
        keys = None if theirs is None else SrtpParams(theirs.suite, srtp.key_for(theirs.suite), theirs.key)
        result = MediaParams(
            codec, event, connection.address, media.port, ours, ptime, remote_ptime, index, keys
        )
    if result is None:
        raise NegotiationError(
            refusal.reason or "no audio stream in the offer uses a codec we support", refusal.warning_code
        )
    return answer, result


class _Refusal:
    """Why an audio stream with a codec of ours was declined (for the 488): the first reason."""

    reason: str | None = None
    warning_code: int = 399

    def refuse(self, reason: str, warning_code: int = 399) -> None:
        if self.reason is None:
            self.reason, self.warning_code = reason, warning_code


def address_family(address: str, addrtype: str = "") -> str | None:
    """The family, as SDP names it (IP4, IP6), of an address literal, else the one the SDP line
    says (a host name); None when neither tells."""
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        kind = addrtype.upper()
        return kind if kind in _FAMILY_NAMES else None


def _reachable(connection: Connection, ours: str | None) -> bool:
    """Our RTP socket can send to the c= address: same family, or an unspecified address (hold:
    nothing is sent to it), or a family we cannot tell (left to the socket)."""
    theirs = address_family(connection.address, connection.addrtype)
    if theirs is None or ours is None or theirs == ours:
        return True
    return connection.address in ("0.0.0.0", "::")


def _family_refusal(connection: Connection, ours: str | None) -> str:
    theirs = address_family(connection.address, connection.addrtype) or connection.addrtype
    return (
        f"the media address {connection.address} is {_FAMILY_NAMES.get(theirs, theirs)} and this server's "
        f"RTP is {_FAMILY_NAMES.get(ours or '', ours)} only"
    )


_PLAIN: Final = "plain"


def _crypto_for(media: Media, srtp: SrtpConfig, refusal: _Refusal) -> Crypto | str | None:
    """The offered crypto line we answer with, `_PLAIN` for plain RTP, or None: decline the stream."""
    secure = media.proto.upper() == SAVP
    if not srtp.enabled:
        if secure:
            refusal.refuse("RTP/SAVP offered but SRTP is off for this call")
            return None
        return _PLAIN
    usable = [c for c in crypto_lines(media.attribute_values("crypto")) if c.suite in srtp.suites]
    if usable:
        return usable[0]  # the offerer's order is its preference (RFC 4568 7.1.3)
    if secure:
        refusal.refuse("no a=crypto line with a suite we support (SRTP)")
        return None
    if srtp.policy is SrtpPolicy.REQUIRED:
        refusal.refuse("SRTP is required: the offer has no usable a=crypto line")
        return None
    return _PLAIN


def check_offer(
    offer: SessionDescription, supported: Sequence[Codec] = DEFAULT_CODECS, srtp: SrtpConfig = OFF
) -> None:
    """SdpParseError if the stream we would use (the first RTP audio stream with a codec of ours)
    has a line that did not parse. A broken line in a stream we decline anyway (video, another
    profile, no common codec, a second audio stream) is ignored: that stream is declined as it
    would be, and the call goes on."""
    for media in offer.media:
        if _is_rtp_audio(media) and _choose(media, supported) is not None:
            if media.proto.upper() == SAVP and not srtp.enabled:
                continue  # declined anyway
            if media.invalid is not None:
                raise SdpParseError(f"in the audio stream: {media.invalid}")
            return


def read_answer(offer: SessionDescription, answer: SessionDescription) -> MediaParams:
    """What the answer to our offer agreed (RFC 3264 section 7). We send with the answer's payload
    type numbers. Raises NegotiationError if the answer does not fit the offer, or leaves out the
    crypto our RTP/SAVP offer requires; an RTP/AVP offer's crypto lines were best effort (`sdes`)."""
    if len(answer.media) != len(offer.media):
        raise NegotiationError(f"answer has {len(answer.media)} m-lines, the offer {len(offer.media)}")
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if not _is_rtp_audio(ours) or theirs.port == 0:
            continue
        if theirs.media != ours.media or theirs.proto.upper() != ours.proto.upper():
            raise NegotiationError(f"m-line {index} changed media or protocol in the answer")
        if theirs.invalid is not None:
            raise NegotiationError(f"m-line {index} of the answer: {theirs.invalid}")
        offered = [r for r in map(ours.rtpmap, ours.formats) if r is not None]
        codec, event = _answered_codecs(theirs, offered)
        connection = answer.connection_for(theirs)
        if connection is None:
            raise NegotiationError("answer has no connection address")
        ours_connection = offer.connection_for(ours)
        ours_family = None if ours_connection is None else address_family(ours_connection.address)
        if not _reachable(connection, ours_family):
            raise NegotiationError(_family_refusal(connection, ours_family), INCOMPATIBLE_ADDRESS_FORMATS)
        direction = _as_seen_by_peer(answer.direction_for(theirs), connection) & offer.direction_for(ours)
        remote_ptime = answer.ptime_for(theirs)
        ptime = _sendable(remote_ptime, codec) or _sendable(offer.ptime_for(ours), codec) or DEFAULT_PTIME
        keys = _answered_keys(ours, theirs)
        return MediaParams(
            codec, event, connection.address, theirs.port, direction, ptime, remote_ptime, index, keys
        )
    raise NegotiationError("the answer accepted no audio stream")


def agreed_keys(offer: SessionDescription, answer: SessionDescription) -> SrtpParams | None:
    """For the answerer: the keys of the stream its answer accepted with a crypto line, seen from
    its side (local: the answer's key, remote: the offer's line with the same tag)."""
    for theirs, ours in zip(offer.media, answer.media, strict=False):
        answered = crypto_lines(ours.attribute_values("crypto")) if ours.port else []
        for crypto in answered:
            offered = crypto_lines(theirs.attribute_values("crypto"))
            match = next((c for c in offered if c.tag == crypto.tag and c.suite is crypto.suite), None)
            if match is not None:
                return SrtpParams(crypto.suite, crypto.key, match.key)
    return None


def _answered_keys(ours: Media, theirs: Media) -> SrtpParams | None:
    """The keys an answer agreed to: its crypto line must carry the tag and suite of one of ours."""
    offered = crypto_lines(ours.attribute_values("crypto"))
    answered = theirs.attribute_values("crypto")
    for crypto in crypto_lines(answered):
        mine = next((c for c in offered if c.tag == crypto.tag and c.suite is crypto.suite), None)
        if mine is not None:
            return SrtpParams(crypto.suite, mine.key, crypto.key)
    if ours.proto.upper() == SAVP:
        raise NegotiationError("SRTP is required but the answer has no a=crypto line matching our offer")
    if offered and answered:
        raise NegotiationError("the answer's a=crypto line matches none of our offer")
    return None


def _session(ip: str, session_id: int, version: int, username: str, times: list[str]) -> SessionDescription:
    connection = Connection.for_address(ip)
    origin = Origin(session_id, version, ip, username, addrtype=connection.addrtype)
    return SessionDescription(origin, connection=connection, times=times)


def _audio_section(
    port: int,
    codecs: Sequence[Codec],
    direction: Direction,
    ptime: int,
    proto: str = AVP,
    crypto: Sequence[Crypto] = (),
) -> Media:
    # rtpmap even for static types: cheap, and some peers mis-handle a bare "0".
    attributes: list[tuple[str, str | None]] = [("rtpmap", f"{c.payload_type} {c.rtpmap}") for c in codecs]
    attributes += [("fmtp", f"{c.payload_type} {c.fmtp}") for c in codecs if c.fmtp]
    attributes += [("crypto", str(c)) for c in crypto]
    attributes += [("ptime", str(ptime)), (direction.value, None)]
    return Media("audio", port, proto, [str(c.payload_type) for c in codecs], attributes=attributes)


def _is_rtp_audio(media: Media) -> bool:
    # RTP/AVPF or SAVPF would need feedback support we do not have; the answer must use the offered
    # proto, so such lines are rejected. RTP/SAVP is usable when the SRTP policy allows (`_crypto_for`).
    return media.media == "audio" and media.proto.upper() in (AVP, SAVP) and media.port != 0


def _payload_type(fmt: str) -> int | None:
    if fmt.isascii() and fmt.isdigit() and len(fmt) <= 3 and int(fmt) <= 127:
        return int(fmt)
    return None


def _choose(media: Media, supported: Sequence[Codec]) -> tuple[Codec, Codec | None] | None:
    """First offered format we support, and a matching telephone-event format if we have one."""
    chosen: Codec | None = None
    for fmt in media.formats:
        pt, rtpmap = _payload_type(fmt), media.rtpmap(fmt)
        if pt is None or rtpmap is None:
            continue
        codec = next((c for c in supported if not c.is_telephone_event and c.matches(rtpmap)), None)
        if codec is not None:
            # The peer's fmtp; for Opus only the peer's (ours would claim it asked for FEC).
            fmtp = media.fmtp(fmt) if codec.is_opus else media.fmtp(fmt) or codec.fmtp
            chosen = dataclasses.replace(codec, payload_type=pt, fmtp=fmtp)
            break
    if chosen is None:
        return None
    ours = next((c for c in supported if c.is_telephone_event and c.clock_rate == chosen.clock_rate), None)
    if ours is None:
        return chosen, None
    for fmt in media.formats:
        pt, rtpmap = _payload_type(fmt), media.rtpmap(fmt)
        if pt is not None and rtpmap is not None and ours.matches(rtpmap):
            return chosen, dataclasses.replace(ours, payload_type=pt, fmtp=media.fmtp(fmt) or ours.fmtp)
    return chosen, None


def _answered_codecs(media: Media, offered: list[RtpMap]) -> tuple[Codec, Codec | None]:
    """The first answered audio format that we offered, and the answered telephone-event format.
    Matching is by encoding, not number: the answerer may renumber dynamic types (RFC 3264 6.1)."""
    codec: Codec | None = None
    event: Codec | None = None
    for fmt in media.formats:
        pt, rtpmap = _payload_type(fmt), media.rtpmap(fmt)
        if pt is None or rtpmap is None:
            continue
        found = Codec(rtpmap.encoding, rtpmap.clock_rate, pt, rtpmap.channels, media.fmtp(fmt))
        if not any(found.matches(r) for r in offered):
            continue
        if found.is_telephone_event:
            event = event or found
        elif codec is None:
            codec = found
    if codec is None:
        raise NegotiationError("the answer selected no codec from the offer")
    if event is not None and event.clock_rate != codec.clock_rate:
        event = None
    return codec, event


def _as_seen_by_peer(direction: Direction, connection: Connection) -> Direction:
    """Direction a peer stated, reversed to our side. c=0.0.0.0 means the peer will not receive
    (RFC 3264 section 8.4), so we must not send whatever the attribute says."""
    if connection.is_hold:
        direction = direction & Direction.SENDONLY
    return direction.reversed()


def _sendable(ptime: int | None, codec: Codec) -> int | None:
    return ptime if ptime in (OPUS_PTIMES if codec.is_opus else SENDABLE_PTIMES) else None
