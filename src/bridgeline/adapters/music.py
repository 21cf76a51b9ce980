"""Music and message sources for the media engine: spec parsing, built-in defaults and a file cache.

A spec is what a PHLO node setting holds: ``tone:440`` or ``tone:440+480`` (a continuous sine or sum
of sines), a WAV file path, or an MP3 file path (decoded by an installed mpg123, ffmpeg or sox).
Unset settings fall back to built-in defaults, chosen to be recognisable
but unobtrusive:

* agent_hold    ``tone:440`` at a low level (agents know the sound: "you are holding a caller");
* customer_hold a soft two-note chime (523 Hz then 659 Hz, 300 ms each, every 2 s), friendlier than a
  continuous tone for somebody who may wait minutes;
* wait          ``tone:350+440`` (the North American dial tone pair) at a low level;
* voicemail     nothing: the message itself is delivered by `MediaEngine.play`, so a leg routed to
  voicemail music hears silence until (and unless) a message plays.

Music is looped and shared: one source per spec for the whole engine, advanced once per tick
(`SharedSource`), so every held leg hears the same point of the same stream. Messages (`play`) are
played once, each from its own start, from the same cached decoded samples.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import structlog
from numpy.typing import NDArray

from bridgeline.core.model import Music
from bridgeline.media.player import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSource,
    SharedSource,
    SilenceSource,
    ToneSource,
    WavFormatError,
    WavPlayer,
)
from bridgeline.phlo.definition import NodeSettings

log = structlog.get_logger(__name__)

TONE_PREFIX: Final = "tone:"
MUSIC_LEVEL: Final = 0.12  # peak as a fraction of full scale: about -18 dBFS, below speech level
MESSAGE_TONE_S: Final = 2.0  # a tone spec played as a message lasts this long
_MAX_TONES: Final = 4
_CACHE_FILES: Final = 32  # decoded WAV files kept; hold music and messages are few and short

# Built-in pattern names (not valid specs in settings, so a node cannot collide with them).
CUSTOMER_HOLD_CHIME: Final = "builtin:chime"
BEEPS: Final = "builtin:beeps"
SILENCE: Final = "builtin:silence"

DEFAULT_SPECS: Final[dict[Music, str]] = {
    Music.AGENT_HOLD: "tone:440",
    Music.CUSTOMER_HOLD: CUSTOMER_HOLD_CHIME,
    Music.WAIT: "tone:350+440",
    Music.VOICEMAIL: SILENCE,
}
_SETTING_FOR: Final[dict[Music, str]] = {
    Music.AGENT_HOLD: "agent_hold_music",
    Music.CUSTOMER_HOLD: "customer_hold_music",
    Music.WAIT: "wait_music",
    Music.VOICEMAIL: "voicemail_message",
}


class Mp3Unavailable(RuntimeError):
    """No MP3 decoder is installed, or it could not decode the file."""


# Each command writes the file as raw signed 16-bit mono 8 kHz samples to stdout.
MP3_DECODERS: Final = (
    ("mpg123", ["-q", "-s", "-m", "-r", "8000", "-e", "s16", "{path}"]),
    ("ffmpeg", ["-v", "error", "-i", "{path}", "-f", "s16le", "-ac", "1", "-ar", "8000", "-"]),
    ("sox", ["{path}", "-t", "raw", "-e", "signed", "-b", "16", "-c", "1", "-r", "8000", "-"]),
)


def decode_mp3(path: Path, decoders: tuple[tuple[str, list[str]], ...] = MP3_DECODERS) -> NDArray[np.int16]:
    """Decode an MP3 with the first installed decoder (mpg123, ffmpeg, or sox with its MP3 plugin).

    Python has no MP3 decoder of its own; rather than add a native dependency for hold music,
    an installed tool is used when there is one, and the music falls back to the default if not."""
    errors = []
    for name, args in decoders:
        binary = shutil.which(name)
        if binary is None:
            continue
        command = [binary, *(a.replace("{path}", str(path)) for a in args)]
        result = subprocess.run(command, capture_output=True, timeout=30, check=False)
        if result.returncode == 0 and len(result.stdout) >= 2:
            return np.frombuffer(result.stdout[: len(result.stdout) // 2 * 2], dtype="<i2").astype(np.int16)
        errors.append(f"{name}: {result.stderr.decode(errors='replace').strip()[:200] or result.returncode}")
    if not errors:
        raise Mp3Unavailable("no MP3 decoder installed (mpg123, ffmpeg or sox with libsox-fmt-mp3)")
    raise Mp3Unavailable("; ".join(errors))


class MusicSpecError(ValueError):
    """A music/message setting that is neither a valid tone spec nor a usable WAV file."""


@dataclass(frozen=True, slots=True)
class ToneSpec:
    freqs: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FileSpec:
    path: Path


@dataclass(frozen=True, slots=True)
class BuiltinSpec:
    name: str


Spec = ToneSpec | FileSpec | BuiltinSpec


def parse_spec(text: str) -> Spec:
    """Parse a setting value; MusicSpecError for malformed tone specs or an empty string.

    A file path is not checked here (that happens when it is loaded)."""
    text = text.strip()
    if not text:
        raise MusicSpecError("empty music spec")
    if text in (CUSTOMER_HOLD_CHIME, BEEPS, SILENCE):
        return BuiltinSpec(text)
    if text.lower().startswith(TONE_PREFIX):
        parts = text[len(TONE_PREFIX) :].split("+")
        try:
            freqs = tuple(float(p) for p in parts)
        except ValueError:
            raise MusicSpecError(f"bad tone spec {text!r}: frequencies must be numbers") from None
        if not 1 <= len(freqs) <= _MAX_TONES:
            raise MusicSpecError(f"bad tone spec {text!r}: 1 to {_MAX_TONES} frequencies")
        if not all(20 <= f < SAMPLE_RATE / 2 for f in freqs):  # also rejects nan and inf
            raise MusicSpecError(f"bad tone spec {text!r}: frequencies must be in 20..3999 Hz")
        return ToneSpec(freqs)
    return FileSpec(Path(text).expanduser())


def spec_for(kind: Music, settings: NodeSettings) -> str:
    """The spec string a music kind plays under these settings (the node's own, else the default)."""
    value: str | None = getattr(settings, _SETTING_FOR[kind])
    if kind is Music.VOICEMAIL:
        return SILENCE  # the voicemail message is played by MediaEngine.play, not looped as music
    return value.strip() if value and value.strip() else DEFAULT_SPECS[kind]


class LoopSource:
    """Plays int16 samples once or looped; many instances may share one read-only array."""

    def __init__(self, samples: NDArray[np.int16], *, loop: bool) -> None:
        self.samples = samples
        self.loop = loop
        self._pos = 0

    @property
    def finished(self) -> bool:
        return not self.loop and self._pos >= self.samples.size

    def next_frame(self) -> NDArray[np.int16]:
        n, pos = self.samples.size, self._pos
        if pos + FRAME_SAMPLES <= n:
            self._pos = pos + FRAME_SAMPLES
            return self.samples[pos : pos + FRAME_SAMPLES]
        frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        if n and self.loop:
            frame[:] = self.samples[(pos + np.arange(FRAME_SAMPLES)) % n]
            self._pos = (pos + FRAME_SAMPLES) % n
        elif pos < n:
            frame[: n - pos] = self.samples[pos:]
            self._pos = n
        return frame


def _note(freq: float, seconds: float, level: float) -> NDArray[np.float64]:
    """A sine with 10 ms raised-cosine edges, so notes start and stop without clicks."""
    n = int(seconds * SAMPLE_RATE)
    wave = np.sin(2 * math.pi * freq * np.arange(n) / SAMPLE_RATE) * level * 32767
    edge = min(80, n // 2)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, edge))
    wave[:edge] *= ramp
    wave[n - edge :] *= ramp[::-1]
    return wave


def _render(parts: list[tuple[float, float]], level: float) -> NDArray[np.int16]:
    """(frequency or 0 for a pause, seconds) in sequence, as int16 samples."""
    chunks = [_note(f, s, level) if f else np.zeros(int(s * SAMPLE_RATE)) for f, s in parts]
    samples = np.rint(np.concatenate(chunks)).astype(np.int16)
    samples.flags.writeable = False
    return samples


CHIME_SAMPLES: Final = _render([(523.25, 0.3), (659.25, 0.3), (0, 1.4)], MUSIC_LEVEL * 1.5)
BEEP_SAMPLES: Final = _render([(1000, 0.2), (0, 0.15), (1000, 0.2), (0, 0.15), (1000, 0.2)], 0.25)


class MusicLibrary:
    """Resolves specs to sources. Music sources are shared per spec; decoded files are cached (LRU).

    Resolving never raises: a broken spec or unreadable file is logged and replaced by `fallback`,
    so a typo in a PHLO setting degrades to the default sound instead of failing a call.
    """

    def __init__(self) -> None:
        self._files: OrderedDict[Path, NDArray[np.int16]] = OrderedDict()
        self._music: dict[str, SharedSource] = {}

    def music(self, spec: str, fallback: str) -> SharedSource:
        """The engine-wide looping source for `spec` (advance it with `frame_at(tick)`)."""
        shared = self._music.get(spec)
        if shared is None:
            source = self._source(spec, loop=True)
            if source is None:
                return self.music(fallback, SILENCE) if spec != fallback else SharedSource(SilenceSource())
            shared = self._music[spec] = SharedSource(source)
        return shared

    def prune(self, in_use: set[str]) -> None:
        """Forget music sources nobody listens to (decoded files stay in the LRU cache)."""
        for spec in [s for s in self._music if s not in in_use]:
            del self._music[spec]

    def message(self, spec: str | None) -> AudioSource:
        """A fresh play-once source for a message; None (or an unusable spec) -> the built-in beeps."""
        source = self._source(spec, loop=False) if spec else None
        return source if source is not None else LoopSource(BEEP_SAMPLES, loop=False)

    def _source(self, spec: str, *, loop: bool) -> AudioSource | None:
        try:
            parsed = parse_spec(spec)
        except MusicSpecError as exc:
            log.warning("media.music_spec_invalid", spec=spec, error=str(exc))
            return None
        if isinstance(parsed, ToneSpec):
            tone = ToneSource(parsed.freqs, amplitude=MUSIC_LEVEL)
            if loop:
                return tone
            n = int(MESSAGE_TONE_S * SAMPLE_RATE) // FRAME_SAMPLES
            return LoopSource(np.concatenate([tone.next_frame() for _ in range(n)]), loop=False)
        if isinstance(parsed, BuiltinSpec):
            if parsed.name == SILENCE:
                return SilenceSource()
            pattern = CHIME_SAMPLES if parsed.name == CUSTOMER_HOLD_CHIME else BEEP_SAMPLES
            return LoopSource(pattern, loop=loop)
        samples = self._load(parsed.path)
        return None if samples is None else LoopSource(samples, loop=loop)

    def _load(self, path: Path) -> NDArray[np.int16] | None:
        samples = self._files.get(path)
        if samples is not None:
            self._files.move_to_end(path)
            return samples
        try:
            # Synchronous read: files are small and loaded once; later uses hit the cache.
            is_mp3 = path.suffix.lower() == ".mp3"
            samples = decode_mp3(path) if is_mp3 else WavPlayer(path).samples  # shared, read-only
        except (OSError, WavFormatError, Mp3Unavailable) as exc:
            log.warning("media.music_file_unusable", path=str(path), error=str(exc))
            return None
        self._files[path] = samples
        if len(self._files) > _CACHE_FILES:
            self._files.popitem(last=False)
        return samples
