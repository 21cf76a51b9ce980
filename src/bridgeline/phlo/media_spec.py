"""The grammar of a music or message setting (`agent_hold_music`, `customer_hold_music`, `wait_music`,
`voicemail_message`): what a PHLO may name as a sound, checked when the PHLO is created and again
once a run's payload has filled its templates.

Three forms, nothing else:

* ``tone:440`` or ``tone:350+440``: 1 to 4 sine frequencies in 20..3999 Hz;
* ``http://...`` or ``https://...``: a URL the server fetches (Plivo's own settings are URLs);
* ``hold/jazz.mp3``: a file relative to the server's media directory, in plain ASCII segments
  (letters, digits, ``_ . -``, never starting with a dot: no ``..``, no hidden files), never
  absolute, never ``~``, never another scheme (``file:``, ``data:``).

Whether the file exists, is a regular file and stays inside the media directory once links are
followed is the loader's business (`adapters/carriers/sip/music_fetch.py`): this module reads no file system.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from bridgeline.phlo.template import SettingError, placeholders

TONE_PREFIX: Final = "tone:"
MAX_SPEC_CHARS: Final = 2048
MAX_TONES: Final = 4
MIN_TONE_HZ: Final = 20.0
MAX_TONE_HZ: Final = 4000.0  # exclusive: half the 8 kHz sample rate
URL_SCHEMES: Final = ("http", "https")
MEDIA_SETTINGS: Final = ("agent_hold_music", "customer_hold_music", "wait_music", "voicemail_message")

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_URL_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_TEMPLATE_STAND_IN: Final = "440"  # fits every form's grammar, so only the text around templates is judged


class MediaSpecError(ValueError):
    """A setting that is none of the accepted forms; the message says which rule it breaks."""


@dataclass(frozen=True, slots=True)
class ToneSpec:
    freqs: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A path relative to the media directory, already checked segment by segment."""

    path: str


@dataclass(frozen=True, slots=True)
class UrlSpec:
    url: str


MediaSpec = ToneSpec | FileSpec | UrlSpec


def parse_media_spec(text: str) -> MediaSpec:
    """The spec a setting names; MediaSpecError when it is none of the three forms."""
    text = text.strip()
    if not text:
        raise MediaSpecError("empty music spec")
    if len(text) > MAX_SPEC_CHARS:
        raise MediaSpecError(f"longer than {MAX_SPEC_CHARS} characters")
    lowered = text.lower()
    if lowered.startswith(TONE_PREFIX):
        return _tone(text)
    if _SCHEME.match(text):
        return _url(text)
    return _file(text)


def _tone(text: str) -> ToneSpec:
    try:
        freqs = tuple(float(p) for p in text[len(TONE_PREFIX) :].split("+"))
    except ValueError:
        raise MediaSpecError(f"bad tone spec {text!r}: frequencies must be numbers") from None
    if not 1 <= len(freqs) <= MAX_TONES:
        raise MediaSpecError(f"bad tone spec {text!r}: 1 to {MAX_TONES} frequencies")
    if not all(math.isfinite(f) and MIN_TONE_HZ <= f < MAX_TONE_HZ for f in freqs):
        raise MediaSpecError(f"bad tone spec {text!r}: frequencies must be in 20..3999 Hz")
    return ToneSpec(freqs)


def _url(text: str) -> UrlSpec:
    scheme = text.split(":", 1)[0].lower()
    if scheme not in URL_SCHEMES:
        raise MediaSpecError(f"the scheme {scheme}: is not allowed (use http, https, tone: or a media file)")
    if not _URL_CHARS.fullmatch(text):
        raise MediaSpecError("a URL must be printable ASCII without spaces (percent-encode the rest)")
    try:
        host = urlsplit(text).hostname
    except ValueError as exc:
        raise MediaSpecError(f"malformed URL: {exc}") from None
    if not host:
        raise MediaSpecError("the URL names no host")
    return UrlSpec(text)


def _file(text: str) -> FileSpec:
    if text.startswith(("/", "~")):
        raise MediaSpecError("files are named relative to the media directory, not by an absolute path")
    for segment in text.split("/"):
        if segment in ("", ".", ".."):
            raise MediaSpecError("a media file path may not contain empty, '.' or '..' segments")
        if not _SEGMENT.fullmatch(segment):
            raise MediaSpecError(
                f"bad media file name segment {segment!r}: ASCII letters, digits, '_', '.', '-', "
                "not starting with a dot"
            )
    return FileSpec(text)


def check_media_setting(value: str | None) -> str | None:
    """Pydantic validator for a node's setting as written in the PHLO: templates stand in for a value
    that fits any form, so `{{music}}` passes and `/etc/{{name}}` does not (the filled value is checked
    again at run time, `check_filled_media`)."""
    if value is None or not value.strip():
        return value
    parse_media_spec(_fill_with_stand_ins(value))
    return value


def _fill_with_stand_ins(value: str) -> str:
    for name in placeholders(value):
        value = re.sub(r"\{\{\s*" + re.escape(name) + r"\s*\}\}", _TEMPLATE_STAND_IN, value)
    return value


def check_filled_media(setting: str, value: str | None) -> None:
    """After a run's payload filled the templates: SettingError (a 400 for the run) unless the
    value is an accepted spec."""
    if value is None or not value.strip():
        return
    try:
        parse_media_spec(value)
    except MediaSpecError as exc:
        raise SettingError(f"{setting}: {exc}") from None
