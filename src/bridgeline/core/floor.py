"""The conference floor: its members, transfers and queued dials, and the steps that change them.

A `Conference` owns one `Floor` and keeps it private; the transfer machine (`transfers.py`) is handed
the same floor and never the Conference. So the steps both share (check a member, dial, take a member
out, open a transfer, publish an event) live here once, and the Conference's public API stays
the inputs and the queries. Everything is pure, like the rest of the core: effects and events are
collected in `effects` for the Conference to return; ids come from counters kept here.

Leaving a member out (`member_left`) lets the pending transfers react, so this module calls into
`transfers.py`, and `transfers.py` names `Floor` only for typing.
"""

from __future__ import annotations

from typing import Any

from bridgeline.core import transfers
from bridgeline.core.effects import DialLeg, DropLeg, Effect, Publish
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import (
    ConferenceRules,
    Event,
    EventType,
    LeaveReason,
    Member,
    MemberStatus,
    QueuedDial,
    Role,
    Transfer,
)
from bridgeline.core.recording import Recording


class Floor:
    """One conference's parties and transfers, with the mutation steps over them."""

    def __init__(self, conference_id: str, rules: ConferenceRules) -> None:
        self.conference_id = conference_id
        self.rules = rules
        self.members: dict[str, Member] = {}  # every member ever, by address (a re-dial replaces a left one)
        self.transfers: list[Transfer] = []
        self.queued: list[QueuedDial] = []
        self.next_seq = 1
        self.leg_counter = 0
        self.transfer_counter = 0
        self.recordings: list[Recording] = []  # core/recording.py
        self.recording_counter = 0
        self.auto_recorded: set[str] = set()  # recordings auto-started once ("" = the conference's)
        self.effects: list[Effect] = []  # what the current input has produced so far

    # ----------------------------------------------------------------- queries
    def live_member(self, address: str) -> Member | None:
        member = self.members.get(address)
        return member if member is not None and member.live else None

    def live_members(self) -> list[Member]:
        return [m for m in self.members.values() if m.live]

    def member_by_leg(self, leg_id: str) -> Member | None:
        for member in self.members.values():
            if member.leg_id == leg_id:
                return member
        return None

    def claimed_addresses(self) -> set[str]:
        return {m.address for m in self.live_members()} | {q.address for q in self.queued}

    def pending_transfer_by(self, initiator: str) -> Transfer | None:
        return next((t for t in self.transfers if t.initiator == initiator and t.state.pending), None)

    def pending_transfer_to(self, target: str) -> Transfer | None:
        return next((t for t in self.transfers if t.target == target and t.state.pending), None)

    # ----------------------------------------------------------------- preconditions
    def require_member(self, address: str) -> Member:
        member = self.live_member(address)
        if member is None:
            raise ActionRefused(f"{address} is not a member of this conference")
        return member

    def require_trigger(self, address: str) -> Member:
        member = self.live_member(address)
        if member is None:
            raise ActionRefused(f"trigger_source {address} is not in a live conference of this node")
        if member.status is MemberStatus.DIALING:
            raise ActionRefused(f"trigger_source {address} has not answered yet")
        return member

    def require_can_add(self, address: str) -> None:
        if address in self.claimed_addresses():
            raise ActionRefused(f"{address} is already a member of this conference")
        if self.pending_transfer_by(address) is not None:
            # A cold transfer outlives its initiator's leg; a new leg at that address would be taken for it.
            raise ActionRefused(f"{address} left a transfer that is still in progress")
        if len(self.claimed_addresses()) >= self.rules.max_participants:
            raise ActionRefused(f"max participants ({self.rules.max_participants}) reached")

    # ----------------------------------------------------------------- steps
    def new_transfer_id(self) -> str:
        self.transfer_counter += 1
        return f"{self.conference_id}-t{self.transfer_counter}"

    def dial(self, address: str, role: Role, room: str, now: float) -> Member:
        self.leg_counter += 1
        member = Member(
            address=address,
            role=role,
            leg_id=f"{self.conference_id}-l{self.leg_counter}",
            status=MemberStatus.DIALING,
            room=room,
            dialed_at=now,
            ring_deadline=now + self.rules.ring_timeout,
        )
        self.members[address] = member
        self.effects.append(DialLeg(member.leg_id, address, role, self.rules.ring_timeout))
        self.emit(now, EventType.MEMBER_DIALING, self.member_data(member))
        return member

    def member_left(self, member: Member, reason: LeaveReason, now: float, *, drop_leg: bool) -> None:
        """Take a member out, then let pending transfers react to its departure."""
        if drop_leg:
            self.effects.append(DropLeg(member.leg_id, reason))
        member.status = MemberStatus.LEFT
        member.left_at = now
        member.leave_reason = reason
        member.ring_deadline = None
        member.playing_voicemail = False
        self.emit(now, EventType.MEMBER_LEFT, self.member_data(member))
        transfers.on_member_left(self, member, reason, now)

    def emit(self, now: float, type_: EventType, data: dict[str, Any]) -> None:
        self.effects.append(Publish(Event(self.next_seq, type_, now, data)))
        self.next_seq += 1

    @staticmethod
    def member_data(member: Member) -> dict[str, Any]:
        data: dict[str, Any] = {
            "member_address": member.address,
            "role": member.role.value,
            "status": member.status.value,
            "leg_id": member.leg_id,
            "mute": member.muted,
        }
        if member.leave_reason is not None:
            data["reason"] = member.leave_reason.value
        if member.answered_by is not None:
            data["answered_by"] = member.answered_by.value
        return data

    def take_effects(self) -> list[Effect]:
        effects, self.effects = self.effects, []
        return effects
