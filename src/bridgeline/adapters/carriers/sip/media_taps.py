"""The media engine's recording taps, apart from its legs, music and messages: which legs each
recording hears, handed to the runtime's taps on the media thread, and each tap's audio delivered to
its recording's sink there. A mixin of `MediaEngine`, like the sip carrier's carrier_lookups.py."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bridgeline.adapters.carriers.sip.media_thread import MediaLoop
from bridgeline.media.runtime import MediaRuntime

log = structlog.get_logger("bridgeline.adapters.carriers.sip.media_engine")

Sink = Callable[[str, bytes], None]


class MediaTaps:
    _runtime: MediaRuntime
    _media: MediaLoop
    # Recordings: recording id -> (conference id, its leg or None for the conference mix, sink).
    _recordings: dict[str, tuple[str, str | None, Sink]]
    _recorded_legs: dict[str, tuple[str, ...]]  # conference id -> SetAudio.recorded

    def start_recording(self, conference_id: str, recording_id: str, leg_id: str | None, sink: Sink) -> None:
        """Tap the conference's recorded legs (leg_id None) or one leg into `sink`, called on the
        media thread with each tick's 20 ms of 8 kHz PCM."""
        self._recordings[recording_id] = (conference_id, leg_id, sink)
        self._tap(recording_id)

    def set_recorded(self, conference_id: str, legs: tuple[str, ...]) -> None:
        """The legs the conference's recording hears now (SetAudio.recorded)."""
        if self._recorded_legs.get(conference_id) == legs:
            return
        self._recorded_legs[conference_id] = legs
        for recording_id, (cid, leg_id, _) in self._recordings.items():
            if cid == conference_id and leg_id is None:
                self._tap(recording_id)

    def stop_recording(self, recording_id: str) -> None:
        entry = self._recordings.pop(recording_id, None)
        if entry is not None:
            runtime, last = self._runtime, {recording_id: entry[2]}

            def stop(now: float) -> None:
                runtime.remove_tap(recording_id)
                self._record(runtime.pop_recorded(), last)  # its last frames, to its sink still

            self._media.submit(stop)

    def flush_recording(self, recording_id: str, then: Callable[[], None]) -> None:
        """On the media thread, in order with the other commands: the tap's frames so far to its sink
        (a removed tap's last ones), then `then`."""
        runtime = self._runtime

        def flush(now: float) -> None:
            runtime.flush_tap(recording_id)
            self._record(runtime.pop_recorded())
            then()

        self._media.submit(flush)

    def forget_recorded(self, conference_id: str) -> None:
        self._recorded_legs.pop(conference_id, None)
        for recording_id in [r for r, (cid, _, _) in self._recordings.items() if cid == conference_id]:
            self.stop_recording(recording_id)

    def _tap(self, recording_id: str) -> None:
        conference_id, leg_id, _ = self._recordings[recording_id]
        legs = self._recorded_legs.get(conference_id, ()) if leg_id is None else (leg_id,)
        runtime = self._runtime
        self._media.submit(lambda now: runtime.set_tap(conference_id, recording_id, legs))

    def _record(
        self,
        recorded: list[tuple[str, bytes]],
        stopped: dict[str, Sink] | None = None,
    ) -> None:
        """On the media thread: each chunk to its recording's sink (which only queues); `stopped`: the
        sinks of recordings stopped since, for their last chunk."""
        recordings = self._recordings
        for recording_id, pcm in recorded:
            entry = recordings.get(recording_id)
            sink = entry[2] if entry is not None else stopped.get(recording_id) if stopped else None
            if sink is not None:
                try:
                    sink(recording_id, pcm)
                except Exception:  # a sink's bug must not stop the tick
                    log.exception("media.recording_sink_failed", recording_id=recording_id)
