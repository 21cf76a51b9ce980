"""The PHLO definition format (YAML or JSON): Multi-Party Call nodes and what a run does.

```yaml
name: support
nodes:
  - name: Multi-Party Call_1
    type: multi_party_call
    caller_id: "+14155550100"
    ring_timeout: 30
    callback_url: "{{callback}}"
run:
  node: Multi-Party Call_1     # optional when the PHLO has one node
  mode: sequential             # dial the first party, then the next once somebody answers
  dial:
    - {to: "{{agent}}", role: agent}
    - {to: "{{customer}}", role: customer}
```
String settings may hold templates filled from the run payload (see template.py).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridgeline.core.effects import MusicSources
from bridgeline.core.identifiers import check_id
from bridgeline.core.model import Role
from bridgeline.phlo.media_spec import MEDIA_SETTINGS, check_filled_media, check_media_setting
from bridgeline.phlo.template import SettingError, fill

CALLBACK_SCHEMES = ("http", "https")
MAX_CALLBACK_URL_LENGTH = 2048


def check_callback_url(url: str) -> str:
    """`url` if it is an absolute http(s) URL with a host; else ValueError saying what is wrong.

    Anything else (file:, gopher:, a bare path) would make the delivery worker read or reach what
    the account owner must not; where the destination address may go is the egress policy's job.
    """
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise ValueError(f"callback_url is longer than {MAX_CALLBACK_URL_LENGTH} characters")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError("callback_url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in CALLBACK_SCHEMES:
        raise ValueError(f"callback_url must be an http or https URL, not {url[:100]!r}")
    if not parts.hostname:
        raise ValueError(f"callback_url has no host: {url[:100]!r}")
    return url


MPC_NODE_TYPE = "multi_party_call"
RECORD_FILE_FORMATS = ("wav", "mp3")


def check_record_file_format(value: str) -> str:
    if value not in RECORD_FILE_FORMATS:
        raise ValueError(f"record_file_format must be wav or mp3, not {value[:50]!r}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MpcNode(_Strict):
    node_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=64)
    name: str = Field(default="Multi-Party Call_1", min_length=1, max_length=100)
    type: Literal["multi_party_call"] = "multi_party_call"
    caller_id: str | None = None
    max_participants: int = Field(default=10, ge=2, le=250)
    max_duration: int = Field(default=14400, ge=10, le=86400, description="seconds")
    ring_timeout: float = Field(default=45, gt=0, le=300, description="seconds")
    agent_hold_music: str | None = None
    customer_hold_music: str | None = None
    wait_music: str | None = None
    voicemail_message: str | None = None
    callback_url: str | None = None
    # Recording (docs/semantics.md "Recording"); Plivo's names.
    record: bool = False
    record_participant_track: bool = False
    record_file_format: str = Field(default="wav", max_length=200, description="wav | mp3, or a template")
    record_min_member_count: int = Field(default=1, ge=1, le=2)
    recording_callback_url: str | None = None
    recording_callback_method: Literal["POST"] = Field(
        default="POST", description="callbacks are POSTed (form-encoded, V3-signed)"
    )

    @field_validator("record_file_format")
    @classmethod
    def _check_format(cls, value: str) -> str:
        if "{{" not in value:
            check_record_file_format(value)
        return value

    @field_validator("node_id")
    @classmethod
    def _check_node_id(cls, value: str) -> str:
        return check_id("node_id", value)

    @field_validator("callback_url", "recording_callback_url")
    @classmethod
    def _callback_url_is_http(cls, value: str | None) -> str | None:
        """A literal URL is checked now; a templated one once the run payload fills it."""
        if value is None or not value:
            return value
        literal = value.split("{{", 1)[0]
        if literal == value:
            return check_callback_url(value)
        if ":" in literal.split("/", 1)[0]:  # the scheme is literal even if the rest is templated
            scheme = literal.split(":", 1)[0].lower()
            if scheme not in CALLBACK_SCHEMES:
                raise ValueError(f"callback_url must be an http or https URL, not {value[:100]!r}")
        return value

    _check_media = field_validator(*MEDIA_SETTINGS)(check_media_setting)  # tones, media files, http(s)


class Dial(_Strict):
    to: str = Field(min_length=1)
    role: Role = Role.AGENT


class RunSpec(_Strict):
    node: str | None = Field(default=None, description="node name or node_id; optional with one node")
    mode: Literal["sequential", "parallel"] = "sequential"
    dial: list[Dial] = Field(min_length=1)


class PhloDefinition(_Strict):
    name: str = Field(min_length=1, max_length=200)
    phlo_id: str | None = Field(default=None, min_length=1, max_length=64)
    nodes: list[MpcNode] = Field(min_length=1)
    run: RunSpec | None = None

    @field_validator("phlo_id")
    @classmethod
    def _check_phlo_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id("phlo_id", value)

    @model_validator(mode="after")
    def _check_references(self) -> PhloDefinition:
        ids = [n.node_id for n in self.nodes]
        names = [n.name for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError("node_id values must be unique within a PHLO")
        if len(set(names)) != len(names):
            raise ValueError("node names must be unique within a PHLO")
        if self.run is not None:
            if self.run.node is None and len(self.nodes) > 1:
                raise ValueError("run.node is required when the PHLO has several nodes")
            if self.run.node is not None and self.find_node(self.run.node) is None:
                raise ValueError(f"run.node '{self.run.node}' names no node of this PHLO")
        return self

    def find_node(self, ref: str) -> MpcNode | None:
        return next((n for n in self.nodes if ref in (n.node_id, n.name)), None)

    def run_node(self) -> MpcNode:
        assert self.run is not None
        found = self.nodes[0] if self.run.node is None else self.find_node(self.run.node)
        assert found is not None  # checked by the validator
        return found


class NodeSettings(BaseModel):
    """A node's settings with every template filled: what one conference runs with."""

    model_config = ConfigDict(frozen=True)

    caller_id: str | None = None
    max_participants: int = 10
    max_duration: int = 14400
    ring_timeout: float = 45
    agent_hold_music: str | None = None
    customer_hold_music: str | None = None
    wait_music: str | None = None
    voicemail_message: str | None = None
    callback_url: str | None = None
    record: bool = False
    record_participant_track: bool = False
    record_file_format: str = "wav"
    record_min_member_count: int = 1
    recording_callback_url: str | None = None

    @property
    def recording_events_url(self) -> str | None:
        """Where recording events go: recording_callback_url, else the node's callback_url."""
        return self.recording_callback_url or self.callback_url

    def music_sources(self) -> MusicSources:
        """The music settings alone: what a carrier's media needs of the node."""
        return MusicSources(
            agent_hold=self.agent_hold_music,
            customer_hold=self.customer_hold_music,
            wait=self.wait_music,
            voicemail=self.voicemail_message,
        )


_TEMPLATED = (
    "caller_id",
    "agent_hold_music",
    "customer_hold_music",
    "wait_music",
    "voicemail_message",
    "callback_url",
    "recording_callback_url",
    "record_file_format",
)


def resolve_settings(node: MpcNode, payload: dict[str, Any]) -> NodeSettings:
    values = node.model_dump(include=set(NodeSettings.model_fields))
    for key in _TEMPLATED:
        if values.get(key) is not None:
            values[key] = fill(values[key], payload) or None
    try:
        for key in ("callback_url", "recording_callback_url"):
            if values.get(key) is not None:
                check_callback_url(values[key])
        values["record_file_format"] = check_record_file_format(values.get("record_file_format") or "wav")
    except ValueError as exc:
        raise SettingError(str(exc)) from None
    for key in MEDIA_SETTINGS:  # a payload must not turn a setting into a path the server would read
        check_filled_media(key, values.get(key))
    return NodeSettings(**values)


def resolve_dials(run: RunSpec, payload: dict[str, Any]) -> list[tuple[str, Role]]:
    return [(fill(d.to, payload), d.role) for d in run.dial]
