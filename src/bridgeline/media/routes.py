"""What one 20 ms media tick does: routes compiled per conference, and the per-tick work over the
layout (`layout.py`) they are flattened into (pull frames, mix, encode, queue one packet per leg).

Kept apart from `runtime.py`, which owns the legs' lifecycle, receiving and the tick's schedule:
this module only turns the legs' jitter buffers and the music into one packet per leg, and defines
the row bookkeeping in the same place as the loops that read it.

Routing changes compile each conference once (`ConferenceMix.configure`) into one of three
shapes: direct (every leg hears at most one source: forwarded or re-encoded, no mixer), plain
(everyone hears everyone else, no music: mixed with the other plain conferences of the same size
in one `MixMinusBatch`), or mixed (its own `Mixer`). A conference with a wideband (G.722 or Opus)
leg is always mixed, at 16 kHz (`_tick_wideband`): G.711 legs' voices and the 8 kHz music are
upsampled into it, and G.711 listeners get their rows through the anti-alias filter; all-G.711 conferences
keep the 8 kHz paths unchanged. `layout.py` keeps them, with the legs in no
conference, flattened into a `TickLayout` that the tick walks without looking legs up by id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from bridgeline.core.effects import LegAudio
from bridgeline.core.model import Music
from bridgeline.media import g711, g722
from bridgeline.media.batch_mix import encode_rows
from bridgeline.media.jitter import FRAME_SAMPLES, Frame, decode_frame
from bridgeline.media.leg import Leg
from bridgeline.media.mixer import Mixer
from bridgeline.media.player import SharedSource
from bridgeline.media.resample import Downsampler

if TYPE_CHECKING:  # layout.py imports ConferenceMix from here
    from bridgeline.media.layout import Batch, TickLayout

__all__ = ["ConferenceMix", "run_tick"]

_MUSIC_KEY: Final = "\x00music:"  # mixer keys for music; leg ids never start with NUL
_TAP_KEY: Final = "\x00tap:"  # mixer listener keys of recording taps
_SILENT_FRAME = np.zeros(160, dtype=np.int16)
_SILENT_WIDE = np.zeros(g722.FRAME_SAMPLES, dtype=np.int16)
_SILENT_CODES: Final = {pt: g711.encode_array(pt, _SILENT_FRAME).tobytes() for pt in (g711.PCMU, g711.PCMA)}


class ConferenceMix:
    """One conference's mixer and the row bookkeeping compiled from its routes."""

    def __init__(self, conference_id: str) -> None:
        self.id = conference_id
        self.mixer: Mixer[str] = Mixer()
        self.legs: tuple[LegAudio, ...] = ()
        self.music: Mapping[Music, SharedSource] = {}
        self.leg_rows: list[tuple[str, int]] = []  # leg id, mixer input row
        self.music_rows: list[tuple[SharedSource, int]] = []
        self.outputs: list[tuple[str, int | None]] = []  # leg id, mixer output row (None: silence)
        # When every leg hears at most one source (two-party calls, hold, waiting alone), the mixer
        # is skipped: leg id -> the one leg id or music source it hears, or None for silence.
        self.direct: list[tuple[str, str | SharedSource | None]] | None = None
        # Everyone hears everyone else, no music (3 members or more): mixed with the other plain
        # conferences of the same size in one batch, not by its own mixer.
        self.plain = False
        self.wideband = False  # mixed at 16 kHz: some leg speaks G.722 or Opus
        # Recording taps: recording id -> the legs it hears. A wideband conference (always mixed)
        # gives each tap a listener row of its mixer; a narrowband one keeps its cheap path and its
        # taps are mixed after the tick from the legs' frames, all taps at once (`taps.TapBlock`).
        self.taps: dict[str, tuple[str, ...]] = {}
        self.tap_rows: list[tuple[str, int]] = []  # recording id, mixer output row
        self._tap_down: dict[str, Downsampler] = {}  # a wideband conference's taps, to 8 kHz

    def configure(
        self, legs: tuple[LegAudio, ...], music: Mapping[Music, SharedSource], wideband: bool = False
    ) -> None:
        """Compile the members' routes (and their music: a kind missing from `music` is silent);
        `wideband`: some leg speaks G.722 or Opus, so the conference is mixed at 16 kHz."""
        self.legs, self.music, self.wideband = legs, music, wideband
        self.mixer.frame_samples = g722.FRAME_SAMPLES if wideband else FRAME_SAMPLES
        members = {la.leg_id for la in legs}
        routes: dict[str, set[str]] = {}
        sources: dict[str, SharedSource] = {}
        for la in legs:
            heard = {h for h in la.hears if h in members and h != la.leg_id}  # never across conferences
            source = music.get(la.music) if la.music is not None else None
            if source is not None:
                key = f"{_MUSIC_KEY}{id(source)}"  # one row per source, however many kinds play it
                sources[key] = source
                heard.add(key)
            routes[la.leg_id] = heard
        for recording_id, heard_legs in self.taps.items() if wideband else ():
            routes[_TAP_KEY + recording_id] = set(heard_legs) & members
        self.plain = (
            not wideband
            and not sources
            and len(routes) > 2
            and all(len(h) == len(routes) - 1 for h in routes.values())
        )
        if self.plain or (not wideband and all(len(heard) <= 1 for heard in routes.values())):
            self.direct = (
                None
                if self.plain
                else [
                    (leg_id, next((sources.get(h, h) for h in heard), None))
                    for leg_id, heard in routes.items()
                ]
            )
            self.leg_rows = [(la.leg_id, -1) for la in legs]
            self.music_rows, self.outputs, self.tap_rows = [], [], []
            self.mixer.configure((), {})  # drop the previous routing's buffers
            return
        self.direct = None
        mixer = self.mixer
        mixer.configure([la.leg_id for la in legs] + list(sources), routes)
        mixer.inputs.fill(0)
        self.leg_rows = [(la.leg_id, mixer.source_row[la.leg_id]) for la in legs]
        self.music_rows = [(src, mixer.source_row[key]) for key, src in sources.items()]
        self.outputs = [(la.leg_id, mixer.output_row.get(la.leg_id)) for la in legs]
        # A tap that hears nobody has no output row: it records silence.
        self.tap_rows = (
            [(rid, mixer.output_row.get(_TAP_KEY + rid, -1)) for rid in self.taps] if wideband else []
        )
        self._tap_down = (
            {rid: self._tap_down.get(rid) or Downsampler() for rid in self.taps} if wideband else {}
        )

    def record(self, out: NDArray[np.int16], recorded: list[tuple[str, bytes]]) -> None:
        """Append each tap's 20 ms (8 kHz int16 PCM) from this tick's mix `out`."""
        for recording_id, row in self.tap_rows:
            if row < 0:
                recorded.append((recording_id, _SILENT_FRAME.tobytes()))
            elif self.wideband:
                recorded.append((recording_id, self._tap_down[recording_id].process(out[row]).tobytes()))
            else:
                recorded.append((recording_id, out[row].tobytes()))


def run_tick(
    layout: TickLayout,
    legs: dict[str, Leg],
    n: int,
    recorded: list[tuple[str, bytes]] | None = None,
    keep_frames: bool = False,
) -> list[Leg]:
    """Queue tick n for every leg; return the legs whose message ended with this tick. `recorded`
    receives the wideband conferences' taps' frames; `keep_frames`: leave each leg's frame of the
    tick in `leg.last_frame`, for the recording taps (`taps.TapBlock`)."""
    finished: list[Leg] = []
    recorded = [] if recorded is None else recorded
    _tick_direct(layout, n, finished, keep_frames)
    for batch in layout.batches:
        _tick_batch(batch, finished, keep_frames)
    for conf in layout.mixed.values():
        if conf.wideband:
            _tick_wideband(conf, legs, n, finished, recorded)
        else:
            _tick_mixed(conf, legs, n, finished, recorded, keep_frames)
    for leg in layout.loose.values():
        if keep_frames:
            leg.last_frame = None  # in no conference: no tap hears it
        if leg.connected:
            leg.jitter.pop_frame()  # keep its playout clock running; nobody hears it
        if leg.message is not None:
            _send_message(leg, finished)
        else:
            leg.send_tick(_silence(leg))
    return finished


def _silence(leg: Leg) -> bytes:
    """A silent frame in the leg's codec (G.722's and Opus's encoders have state: they encode the
    silence)."""
    codes = _SILENT_CODES.get(leg.payload_type)
    return leg.encode_narrow(_SILENT_FRAME) if codes is None else codes


def _tick_direct(layout: TickLayout, n: int, finished: list[Leg], keep_frames: bool) -> None:
    frames = [
        leg.jitter.pop_payload() if leg is not None and leg.connected else None for leg in layout.pulled
    ]
    if keep_frames:
        for leg, kept in zip(layout.pulled, frames, strict=True):
            if leg is not None:
                leg.last_frame = kept
    for leg, source in layout.direct:
        if leg.message is not None:
            _send_message(leg, finished)
            continue
        if leg.silent:  # e.g. a held call answered a=inactive: nothing to encode
            leg.send_tick(b"")
            continue
        pt = leg.payload_type
        frame: Frame | None
        if type(source) is int:
            frame = frames[source]
            if type(frame) is tuple and frame[0] == pt:
                leg.send_tick(frame[1])  # same codec both ways: forward the codes as they came
                continue
        elif isinstance(source, SharedSource):
            leg.send_tick(source.codes_at(n, pt))
            continue
        else:
            frame = None
        if frame is None:
            leg.send_tick(_SILENT_CODES[pt])
        else:
            leg.send_tick(g711.encode_array(pt, decode_frame(frame)).tobytes())


def _tick_batch(batch: Batch, finished: list[Leg], keep_frames: bool) -> None:
    legs, mixer, pt = batch.legs, batch.mixer, batch.pt
    chunks: list[bytes] = []
    others: list[tuple[int, Frame | None]] = []  # rows not in codec `pt`: silent, decoded or other codec
    placeholder = _SILENT_CODES[pt]
    for row, leg in enumerate(legs):
        frame = leg.jitter.pop_payload() if leg is not None and leg.connected else None
        if keep_frames and leg is not None:
            leg.last_frame = frame
        if type(frame) is tuple and frame[0] == pt:
            chunks.append(frame[1])
        else:
            chunks.append(placeholder)
            others.append((row, frame))
    mixer.decode_into(pt, b"".join(chunks))  # one table lookup for all the batch's rows
    if others:
        _write_rows(mixer.inputs, others)
    out = mixer.mix()
    blobs = {code: encode_rows(code, out) for code in batch.pts}  # the whole batch, once per codec
    blob = blobs[pt] if len(blobs) == 1 else b""
    offset = 0
    for leg in legs:
        if leg is not None:
            if leg.message is not None:
                _send_message(leg, finished)
            else:
                codes = blob or blobs[leg.payload_type]
                leg.send_tick(codes[offset : offset + FRAME_SAMPLES])
        offset += FRAME_SAMPLES


def _write_rows(inputs: NDArray[np.int16], rows: list[tuple[int, Frame | None]]) -> None:
    undecoded: dict[int, tuple[list[int], list[bytes]]] = {}  # payload type -> rows, codes
    for row, frame in rows:
        if frame is None:
            inputs[row].fill(0)
        elif type(frame) is tuple:
            rows_of, chunks = undecoded.setdefault(frame[0], ([], []))
            rows_of.append(row)
            chunks.append(frame[1])
        else:
            inputs[row] = frame
    for pt, (rows_of, chunks) in undecoded.items():  # one table lookup for all of a codec's rows
        inputs[rows_of] = g711.decode(pt, b"".join(chunks)).reshape(len(rows_of), FRAME_SAMPLES)


def _tick_mixed(
    conf: ConferenceMix,
    legs: dict[str, Leg],
    n: int,
    finished: list[Leg],
    recorded: list[tuple[str, bytes]],
    keep_frames: bool,
) -> None:
    inputs = conf.mixer.inputs
    frames: list[tuple[int, Frame | None]] = []
    for leg_id, row in conf.leg_rows:
        leg = legs.get(leg_id)
        frame = leg.jitter.pop_payload() if leg is not None and leg.connected else None
        if keep_frames and leg is not None:
            leg.last_frame = frame
        frames.append((row, frame))
    _write_rows(inputs, frames)
    for source, row in conf.music_rows:
        inputs[row] = source.frame_at(n)  # shared: advances once per tick runtime-wide
    out = conf.mixer.mix_inputs()
    encoded: dict[int, NDArray[np.uint8]] = {}  # the whole output matrix, once per codec
    for leg_id, out_row in conf.outputs:
        leg = legs.get(leg_id)
        if leg is None:
            continue
        if leg.message is not None:
            _send_message(leg, finished)
        elif out_row is None:
            leg.send_tick(_SILENT_CODES[leg.payload_type])
        else:
            pt = leg.payload_type
            codes = encoded.get(pt)
            if codes is None:
                codes = encoded[pt] = g711.encode_array(pt, out)
            leg.send_tick(codes[out_row].tobytes())


def _tick_wideband(
    conf: ConferenceMix, legs: dict[str, Leg], n: int, finished: list[Leg], recorded: list[tuple[str, bytes]]
) -> None:
    """_tick_mixed at 16 kHz: every input widened (G.722 and Opus decoded, G.711 and music
    upsampled), every output encoded by its listener's own codec state (G.722 and Opus are
    stateful; G.711 is filtered down)."""
    inputs = conf.mixer.inputs
    for leg_id, row in conf.leg_rows:
        leg = legs.get(leg_id)
        frame = leg.jitter.pop_payload() if leg is not None and leg.connected else None
        if frame is None or leg is None:
            inputs[row].fill(0)
        else:
            inputs[row] = leg.widen(frame)
    for source, row in conf.music_rows:
        inputs[row] = source.wide_frame_at(n)  # shared: upsampled once per tick runtime-wide
    out = conf.mixer.mix_inputs()
    if conf.tap_rows:
        conf.record(out, recorded)
    for leg_id, out_row in conf.outputs:
        leg = legs.get(leg_id)
        if leg is None:
            continue
        if leg.message is not None:
            _send_message(leg, finished)
        elif leg.silent:
            leg.send_tick(b"")  # nothing is sent: spare the encoder
        elif out_row is None:
            leg.send_tick(leg.encode_wide(_SILENT_WIDE))
        else:
            leg.send_tick(leg.encode_wide(out[out_row]))


def _send_message(leg: Leg, finished: list[Leg]) -> None:
    message = leg.message
    assert message is not None
    leg.send_tick(leg.encode_narrow(message.next_frame()))
    if message.finished:
        leg.message = None
        finished.append(leg)  # the runtime reports it with the leg's message token
