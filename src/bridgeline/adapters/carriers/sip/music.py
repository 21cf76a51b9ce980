"""Music and message sources for the media engine: built-in defaults, tones, and audio from the media
directory or http(s) URLs, loaded off the event loop.

A spec is what a PHLO node setting holds (grammar: `phlo/media_spec.py`): ``tone:440`` or
``tone:440+480`` (a continuous sine or sum of sines), a file relative to the media directory, or an
http(s) URL. Unset settings fall back to built-in defaults, chosen to be recognisable but
unobtrusive:

* agent_hold    ``tone:440`` at a low level (agents know the sound: "you are holding a caller");
* customer_hold a soft two-note chime (523 Hz then 659 Hz, 300 ms each, every 2 s), friendlier than a
  continuous tone for somebody who may wait minutes;
* wait          ``tone:350+440`` (the North American dial tone pair) at a low level;
* voicemail     nothing: the message itself is delivered by `MediaEngine.play`, so a leg routed to
  voicemail music hears silence until (and unless) a message plays.

Files and URLs are read, fetched and decoded by worker threads (`music_fetch.py`,
`music_decode.py`): the 20 ms tick never waits for them. Until a source is ready its listeners hear
the kind's default; when a load ends the library calls `on_loaded` (from the worker's thread), and
the engine then calls `poll()` on the event loop to swap ready sources in, and learns which failed
(they keep the default, and the engine reports them to the conferences). Swapping is one attribute
assignment (`SwitchSource.current`), which the media thread may read at any time.

Music is looped and shared: one source per spec for the whole engine, advanced once per tick
(`SharedSource`), so every held leg hears the same point of the same stream. Messages (`play`) are
played once, each from its own start, from the same cached decoded samples.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Container
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import numpy as np
import structlog
from numpy.typing import NDArray

from bridgeline.adapters.carriers.sip.music_decode import DecodedCache, Samples
from bridgeline.adapters.carriers.sip.music_fetch import (
    MediaLimits,
    MediaUnavailable,
    fetch_url,
    read_media_file,
)
from bridgeline.core.effects import MusicSources
from bridgeline.core.model import Music
from bridgeline.media.player import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioSource,
    SharedSource,
    SilenceSource,
    ToneSource,
)
from bridgeline.phlo.media_spec import (
    FileSpec,
    MediaSpec,
    MediaSpecError,
    ToneSpec,
    UrlSpec,
    parse_media_spec,
)

log = structlog.get_logger(__name__)

MUSIC_LEVEL: Final = 0.12  # peak as a fraction of full scale: about -18 dBFS, below speech level
MESSAGE_TONE_S: Final = 2.0  # a tone spec played as a message lasts this long
LOAD_WORKERS: Final = 2  # threads that fetch and decode; a slow URL occupies one for its time limit
_URLS_REMEMBERED: Final = 256  # url -> content digest, so a URL in use again is not fetched again

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
SETTING_FOR: Final[dict[Music, str]] = {
    Music.AGENT_HOLD: "agent_hold_music",
    Music.CUSTOMER_HOLD: "customer_hold_music",
    Music.WAIT: "wait_music",
    Music.VOICEMAIL: "voicemail_message",
}

# Called on the event loop's thread once a load ends: (samples, "") or (None, why it failed).
_Apply = Callable[[Samples | None, str], None]


def spec_for(kind: Music, music: MusicSources) -> str:
    """The spec string a music kind plays in a conference (the node's own, else the default)."""
    value = music.spec(kind)
    if kind is Music.VOICEMAIL:
        return SILENCE  # the voicemail message is played by MediaEngine.play, not looped as music
    return value.strip() if value and value.strip() else DEFAULT_SPECS[kind]


class SwitchSource:
    """A source whose audio is replaced in place: listeners keep the object while it loads."""

    def __init__(self, current: AudioSource) -> None:
        self.current = current

    @property
    def finished(self) -> bool:
        return self.current.finished

    def next_frame(self) -> NDArray[np.int16]:
        return self.current.next_frame()


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
    """Resolves specs to sources. Music sources are shared per spec; decoded audio is cached by content.

    Resolving never raises and never blocks: a spec that cannot be used plays the fallback, and
    `poll()` reports it, so a bad setting degrades to the default sound instead of failing a call.
    Every method runs on the event loop's thread except the workers' `_load`.
    """

    def __init__(
        self, limits: MediaLimits | None = None, on_loaded: Callable[[], None] | None = None
    ) -> None:
        self.limits = limits or MediaLimits()
        self._on_loaded = on_loaded  # told (from any thread) that poll() has something to apply
        self.cache = DecodedCache(self.limits.cache_bytes)
        self._music: dict[str, SharedSource] = {}
        self._failed: dict[str, str] = {}  # music spec in use -> why it plays its fallback
        self._url_digests: OrderedDict[str, str] = OrderedDict()
        self._waiting: dict[str, list[_Apply]] = {}  # spec being loaded -> what to do when it ends
        self._done: deque[tuple[str, str, Samples | None, str]] = deque()  # spec, digest, samples, error
        self._executor: ThreadPoolExecutor | None = None

    @property
    def loading(self) -> int:
        """Specs being read, fetched or decoded now."""
        return len(self._waiting)

    def close(self) -> None:
        """Stop the workers; loads under way are abandoned (a fetch ends within its time limit)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self._waiting.clear()
        self._done.clear()

    def music(self, spec: str, fallback: str) -> SharedSource:
        """The engine-wide looping source for `spec` (advance it with `frame_at(tick)`)."""
        shared = self._music.get(spec)
        if shared is not None:
            return shared
        default = _parsed(fallback)
        if isinstance(default, ToneSpec):
            switch = SwitchSource(_tone(default, loop=True))
        else:
            switch = SwitchSource(self._builtin(fallback, loop=True) or SilenceSource())
        shared = self._music[spec] = SharedSource(switch)

        def apply(samples: Samples | None, error: str) -> None:
            if self._music.get(spec) is not shared:
                return  # pruned while loading
            if samples is None:
                self._failed[spec] = error
            else:
                switch.current = LoopSource(samples, loop=True)

        ready = self._resolve(spec, loop=True, apply=apply)
        if ready is not None:
            switch.current = ready
        return shared

    def failure(self, spec: str) -> str | None:
        """Why the music source for `spec` plays its fallback, or None."""
        return self._failed.get(spec)

    def prune(self, in_use: Container[str]) -> None:
        """Forget music sources nobody listens to (decoded audio stays in the cache): a failed one is
        tried again the next time somebody needs it."""
        for spec in [s for s in self._music if s not in in_use]:
            del self._music[spec]
            self._failed.pop(spec, None)

    def message(self, spec: str | None) -> AudioSource:
        """A fresh play-once source for a message: silent while it loads; None, or an unusable spec,
        plays the built-in beeps."""
        if not spec:
            return LoopSource(BEEP_SAMPLES, loop=False)
        switch = SwitchSource(SilenceSource())

        def apply(samples: Samples | None, error: str) -> None:
            switch.current = LoopSource(BEEP_SAMPLES if samples is None else samples, loop=False)

        ready = self._resolve(spec, loop=False, apply=apply)
        if ready is not None:
            switch.current = ready
        return switch

    def poll(self) -> list[tuple[str, str]]:
        """Apply the loads that ended since the last call; (spec, reason) for each that failed."""
        failed = []
        while self._done:
            spec, digest, samples, error = self._done.popleft()
            if digest and spec in self._waiting and isinstance(_parsed(spec), UrlSpec):
                self._url_digests[spec] = digest
                if len(self._url_digests) > _URLS_REMEMBERED:
                    self._url_digests.popitem(last=False)
            if samples is None:
                log.warning("media.source_failed", spec=spec, error=error)
                failed.append((spec, error))
            for apply in self._waiting.pop(spec, []):
                apply(samples, error)
        return failed

    # ------------------------------------------------------------------ loading
    def _resolve(self, spec: str, *, loop: bool, apply: _Apply) -> AudioSource | None:
        """The source now when it needs no I/O (tones, built-ins, a URL whose audio is cached);
        otherwise None, and `apply` runs from a later `poll()`."""
        builtin = self._builtin(spec, loop=loop)
        if builtin is not None:
            return builtin
        try:
            parsed = parse_media_spec(spec)
        except MediaSpecError as exc:  # e.g. a PHLO stored before specs were checked
            self._waiting.setdefault(spec, []).append(apply)
            self._finished(spec, "", None, f"invalid music spec: {exc}")
            return None
        if isinstance(parsed, ToneSpec):
            return _tone(parsed, loop=loop)
        digest = self._url_digests.get(spec)
        samples = self.cache.get(digest) if digest else None
        if samples is not None:
            return LoopSource(samples, loop=loop)
        waiters = self._waiting.setdefault(spec, [])
        waiters.append(apply)
        if len(waiters) == 1:  # the first to ask starts the load; later ones wait for the same one
            if self._executor is None:
                self._executor = ThreadPoolExecutor(LOAD_WORKERS, thread_name_prefix="media-load")
            self._executor.submit(self._load, spec, parsed)
        return None

    def _load(self, spec: str, parsed: FileSpec | UrlSpec) -> None:
        """In a worker thread: read or fetch, decode (or find the content's audio in the cache)."""
        limits = self.limits
        try:
            if isinstance(parsed, UrlSpec):
                data = fetch_url(parsed.url, limits.max_bytes, limits.fetch_timeout_s, limits.egress)
            else:
                data = read_media_file(limits.media_dir, parsed.path, limits.max_bytes)
            digest, samples = self.cache.decode(data, limits.max_seconds)
        except MediaUnavailable as exc:
            self._finished(spec, "", None, str(exc))
        except Exception as exc:  # a decoder or client bug must not leave the spec loading forever
            log.exception("media.load_failed", spec=spec)
            self._finished(spec, "", None, f"internal error: {type(exc).__name__}")
        else:
            self._finished(spec, digest, samples, "")

    def _finished(self, spec: str, digest: str, samples: Samples | None, error: str) -> None:
        self._done.append((spec, digest, samples, error))
        if self._on_loaded is not None:
            self._on_loaded()

    @staticmethod
    def _builtin(spec: str, *, loop: bool) -> AudioSource | None:
        if spec in (CUSTOMER_HOLD_CHIME, BEEPS):
            return LoopSource(CHIME_SAMPLES if spec == CUSTOMER_HOLD_CHIME else BEEP_SAMPLES, loop=loop)
        return SilenceSource() if spec == SILENCE else None


def _parsed(spec: str) -> MediaSpec | None:
    try:
        return parse_media_spec(spec)
    except MediaSpecError:
        return None


def _tone(spec: ToneSpec, *, loop: bool) -> AudioSource:
    tone = ToneSource(spec.freqs, amplitude=MUSIC_LEVEL)
    if loop:
        return tone
    n = int(MESSAGE_TONE_S * SAMPLE_RATE) // FRAME_SAMPLES
    return LoopSource(np.concatenate([tone.next_frame() for _ in range(n)]), loop=False)
