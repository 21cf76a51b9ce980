"""A committed input's effects, carried out: each one turned into a carrier command (dial, drop,
play, set the audio) or handed to the recording manager, with the leg requests the carrier takes.

Apart from `service.py`, which decides when effects run (only after their commit, under the
conference's lock) and what the conference does next (re-arm its timer, or be forgotten): this is
only the translation from the core's effects to the ports.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from bridgeline.app.live import ConferenceMeta
from bridgeline.app.ports import Carrier, LegRequest
from bridgeline.core.effects import ControlRecording, DialLeg, DropLeg, Effect, PlayMessage, SetAudio
from bridgeline.core.model import Role

# The service's logger: these lines were its own before this module was split off.
log = structlog.get_logger("bridgeline.app.service")

RecordingControl = Callable[[ConferenceMeta, ControlRecording], None]
"""Carries out a committed ControlRecording effect (app/recordings.py)."""


def carry_out(
    carrier: Carrier, recorder: RecordingControl | None, meta: ConferenceMeta, effects: list[Effect]
) -> None:
    for effect in effects:
        if isinstance(effect, DialLeg):
            carrier.dial(leg_request(meta, effect.leg_id, effect.to, effect.role))
        elif isinstance(effect, DropLeg):
            carrier.drop(effect.leg_id, effect.reason)
        elif isinstance(effect, PlayMessage):
            carrier.play(effect.leg_id, meta.settings.voicemail_message)
        elif isinstance(effect, SetAudio):
            carrier.set_audio(meta.conference_id, effect, meta.settings.music_sources())
        elif isinstance(effect, ControlRecording):
            if recorder is not None:
                recorder(meta, effect)
            else:  # no recording files wired (a bare test service): logged, the call goes on
                log.warning("recording_not_wired", recording_id=effect.recording_id)


def leg_request(meta: ConferenceMeta, leg_id: str, to: str, role: Role) -> LegRequest:
    """What the carrier needs to place (or restore) one leg of the conference."""
    return LegRequest(
        meta.conference_id,
        leg_id,
        to,
        role,
        meta.settings.caller_id,
        float(meta.settings.ring_timeout),
        meta.auth_id,
    )
