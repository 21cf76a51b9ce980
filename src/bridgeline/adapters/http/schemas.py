"""Request body models, used for the OpenAPI description (handlers parse bodies leniently)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class MpcActionBody(BaseModel):
    action: Literal["call", "warm_transfer", "cold_transfer"]
    to: str = Field(description="E.164 number, SIP URI or endpoint username to dial")
    role: Literal["agent", "customer", ""] = Field(
        default="agent", description="missing or empty means agent"
    )
    trigger_source: str = Field(description="the member (usually the agent) that asks")


class MemberActionBody(BaseModel):
    action: Literal["hold", "unhold", "hangup", "resume_call", "voicemail_drop", "abort_transfer"]


class SimPhoneBody(BaseModel):
    answer: Literal["answer", "busy", "no_answer", "reject", "voicemail"] = "answer"
    answer_delay_ms: int | None = Field(default=None, ge=0, le=600_000)


class RunBody(BaseModel):
    """Free-form payload: the keys the PHLO's templates use (e.g. agent, customer)."""

    model_config = {"extra": "allow"}
