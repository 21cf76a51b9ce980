"""Request body models: the one source of truth that validates each body and describes it in OpenAPI.

They keep the API's leniency (docs/semantics.md): numbers are accepted as strings (`to: 14155550100`),
an empty string means a missing field, action and role values ignore case and read `-` as `_`, an
empty role means agent, unknown fields are ignored. A failure raises PydanticCustomError with the
error's type ("missing" or "invalid") and Plivo's detail, which ApiRequest.parse turns into a 400.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.model import Role

MpcAction = Literal["call", "warm_transfer", "cold_transfer"]
MemberAction = Literal[
    "hold", "unhold", "mute", "unmute", "hangup", "resume_call", "voicemail_drop", "abort_transfer"
]
# resume_call and abort_transfer act on a transfer's initiator, whom trigger_source names: Java's
# MultiPartyCallUpdater and Go's free `Action` field post them to the node URI too.
NodeUriAction = Literal["call", "warm_transfer", "cold_transfer", "resume_call", "abort_transfer"]
MEMBER_URI_ONLY = "'{action}' acts on one member: POST it to …/members/{{member_address}}."
# Java's MultiPartyCallUpdater posts any action to a member's URI (`.member(addr)`), the transfers too.
MemberUriAction = Literal[MemberAction, "call", "warm_transfer", "cold_transfer"]
AnswerName = Literal["answer", "busy", "no_answer", "reject", "voicemail"]
MAX_ANSWER_DELAY_MS = 600_000


def missing_error() -> PydanticCustomError:
    return PydanticCustomError("missing", "field required")


def invalid_error(detail: str) -> PydanticCustomError:
    # The detail goes through as the template's value, so braces in it are not read as placeholders.
    return PydanticCustomError("invalid", "{detail}", {"detail": detail})


def _text(value: Any, name: str) -> str | None:
    """A string field's text, None when absent or empty; numbers are accepted as their text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid_error(f"{name} expects a string.")
    return str(value).strip()


def _required_text(value: Any, name: str) -> str:
    text = _text(value, name)
    if text is None:
        raise missing_error()
    return text


def _classified(text: str) -> str:
    """`text` if it is an address Bridgeline can dial (classify's reason otherwise)."""
    try:
        classify(text)
    except InvalidAddress as exc:
        raise invalid_error(str(exc)) from None
    return text


def _address(name: str) -> BeforeValidator:
    return BeforeValidator(lambda value: _classified(_required_text(value, name)))


def _action(allowed: Any, elsewhere: str = "") -> BeforeValidator:
    """`elsewhere`: what to say of a known action this URI does not take (where to send it)."""
    names = get_args(allowed)
    known = set(get_args(MemberUriAction))

    def check(value: Any) -> str:
        raw = _required_text(value, "action")
        # Java's shared ObjectMapper may write `cold-transfer`; the action names are otherwise exact.
        action = raw.lower().replace("-", "_")
        if action not in names:
            hint = f" {elsewhere.format(action=action)}" if elsewhere and action in known else ""
            raise invalid_error(f"'{raw}' is not one of: {', '.join(names)}.{hint}")
        return action

    return BeforeValidator(check)


def _to_fits_the_action(to: str | None, info: ValidationInfo) -> str | None:
    """`to` is required by the actions that dial and refused by the others (a valid action only:
    an invalid one has already answered)."""
    action = info.data.get("action")
    if action in get_args(MpcAction) and to is None:
        raise missing_error()
    if action is not None and action not in get_args(MpcAction) and to is not None:
        raise invalid_error(f"{action} dials nobody.")
    return to


def _optional_address(name: str) -> BeforeValidator:
    def check(value: Any) -> str | None:
        text = _text(value, name)
        return None if text is None else _classified(text)

    return BeforeValidator(check)


def _role(value: Any) -> Role:
    raw = _text(value, "role")
    if raw is None:
        return Role.AGENT  # Plivo documents the default; SDKs omit role or send ""
    try:
        return Role(raw.lower())
    except ValueError:
        raise invalid_error("Allowed values are 'agent' and 'customer'.") from None


def _answer(value: Any) -> str:
    raw = _text(value, "answer") or "answer"
    if raw not in get_args(AnswerName):
        raise invalid_error("Allowed values are " + ", ".join(get_args(AnswerName)) + ".")
    return raw


def _answer_delay(value: Any) -> Any:
    # Strictly an integer: a form field's "100" or JSON's true are refused, not converted.
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ANSWER_DELAY_MS
    ):
        raise invalid_error(f"answer_delay_ms expects an integer from 0 to {MAX_ANSWER_DELAY_MS}.")
    return value


class PlivoBody(BaseModel):
    """A body whose first error answers in Plivo's words (`to is a mandatory param.`)."""


class MpcActionBody(PlivoBody):
    """The node URI. `resume_call` and `abort_transfer` are member actions whose member is the
    transfer's initiator: here `trigger_source` names it (the SDKs that send them here: Java, Go)."""

    action: Annotated[NodeUriAction, _action(NodeUriAction, MEMBER_URI_ONLY)] = Field(
        description="case-insensitive; `-` reads as `_`"
    )
    to: Annotated[str | None, _optional_address("to")] = Field(
        default=None,
        validate_default=True,
        description="E.164 number, SIP URI or endpoint username to dial (a number is accepted); "
        "required by call, warm_transfer and cold_transfer, refused with resume_call and abort_transfer",
    )
    role: Annotated[Role, BeforeValidator(_role)] = Field(
        default=Role.AGENT, description="case-insensitive; missing or empty means agent"
    )
    trigger_source: Annotated[str, _address("trigger_source")] = Field(
        description="the member (usually the agent) that asks; for resume_call and abort_transfer, "
        "the member acted on"
    )

    _check_to = field_validator("to")(_to_fits_the_action)


class MemberActionBody(PlivoBody):
    """A member's URI. `call`, `warm_transfer` and `cold_transfer` are accepted here too (Java's
    MultiPartyCallUpdater with `.member(addr)`): the member in the path is their trigger_source."""

    action: Annotated[MemberUriAction, _action(MemberUriAction)] = Field(
        description="case-insensitive; `-` reads as `_`"
    )
    to: Annotated[str | None, _optional_address("to")] = Field(
        default=None,
        validate_default=True,
        description="call, warm_transfer, cold_transfer: the party to dial (required); refused with the "
        "member actions",
    )
    role: Annotated[Role, BeforeValidator(_role)] = Field(
        default=Role.AGENT,
        description="call, warm_transfer, cold_transfer: case-insensitive; missing or empty means agent",
    )
    trigger_source: Annotated[str | None, _optional_address("trigger_source")] = Field(
        default=None,
        description="call, warm_transfer, cold_transfer: optional, and then the member in the path; "
        "ignored by the member actions (who asks)",
    )

    _check_to = field_validator("to")(_to_fits_the_action)


class SimPhoneBody(PlivoBody):
    answer: Annotated[AnswerName, BeforeValidator(_answer)] = "answer"
    answer_delay_ms: Annotated[int | None, BeforeValidator(_answer_delay)] = Field(
        default=None, ge=0, le=MAX_ANSWER_DELAY_MS
    )


class RunBody(PlivoBody):
    """Free-form payload: the keys the PHLO's templates use (e.g. agent, customer)."""

    model_config = ConfigDict(extra="allow")


RecordingActionName = Literal["start", "stop", "pause", "resume"]
RecordFileFormat = Literal["wav", "mp3"]


def _file_format(value: Any) -> str | None:
    raw = _text(value, "file_format")
    if raw is None:
        return None
    if raw.lower() not in get_args(RecordFileFormat):
        raise invalid_error("Allowed values are 'wav' and 'mp3'.")
    return raw.lower()


class RecordingActionBody(PlivoBody):
    """The conference recording of the live conference that holds `trigger_source` (Bridgeline)."""

    action: Annotated[RecordingActionName, _action(RecordingActionName)] = Field(
        description="start, stop, pause (silence is written: the timeline is kept) or resume"
    )
    trigger_source: Annotated[str, _address("trigger_source")] = Field(
        description="a member of the conference to record"
    )
    file_format: Annotated[RecordFileFormat | None, BeforeValidator(_file_format)] = Field(
        default=None, description="start only: wav or mp3; default the node's record_file_format"
    )


class MemberRecordingBody(PlivoBody):
    """A member's participant track: what that member says (Bridgeline)."""

    action: Annotated[RecordingActionName, _action(RecordingActionName)] = Field(
        description="start, stop, pause (silence is written: the timeline is kept) or resume"
    )
    file_format: Annotated[RecordFileFormat | None, BeforeValidator(_file_format)] = Field(
        default=None, description="start only: wav or mp3; default the node's record_file_format"
    )
