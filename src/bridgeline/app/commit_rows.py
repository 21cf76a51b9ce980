"""What one commit of a conference writes, derived from its live state: the conference's record (the
snapshot), its new events, the callback deliveries they owe, the run's end with the conference's
last commit, and the member addresses it claims and releases.

Apart from `service.py`, which decides when to commit and what to do when the store refuses: this is
only the translation from a `LiveConference` to the store's rows, with no lock, clock or store.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridgeline.app.live import RECORDING_EVENTS, ConferenceMeta, LiveConference, callback_params, run_end_of
from bridgeline.app.records import ConferenceRecord, ConferenceStatus, EventRecord, NewDelivery, RunEnd
from bridgeline.core import snapshot
from bridgeline.core.effects import Effect, Publish


@dataclass(frozen=True, slots=True)
class CommitRows:
    """The arguments of one `ConferenceStore.commit_conference`, and the state it stores."""

    record: ConferenceRecord
    state: dict[str, object]  # the record's snapshot: the conference's last committed state once stored
    events: list[EventRecord]
    deliveries: list[NewDelivery]
    run_end: RunEnd | None
    claimed: list[str]
    released: list[str]


def commit_rows(
    live: LiveConference,
    effects: list[Effect],
    *,
    owner: tuple[str, int] | None,
    updated_at: float,
    public_url: str,
    finish_run: bool,
) -> CommitRows:
    """`owner`: the (node, epoch) the store must still see as the conference's; `public_url`: the base
    of recordings' URLs in callbacks; `finish_run`: an ended conference's commit also ends its run."""
    meta, conf = live.meta, live.conf
    events = [
        EventRecord(meta.conference_id, e.event.seq, e.event.type.value, e.event.at, e.event.data)
        for e in effects
        if isinstance(e, Publish)
    ]
    deliveries = [
        NewDelivery(meta.conference_id, ev.seq, url, meta.auth_id, callback_params(meta, ev, public_url))
        for ev in events
        if (url := callback_url(meta, ev))
    ]
    state: dict[str, object] = {"core": snapshot.dump(conf), "settings": meta.settings_data}
    record = ConferenceRecord(
        conference_id=meta.conference_id,
        auth_id=meta.auth_id,
        phlo_id=meta.phlo_id,
        node_id=meta.node_id,
        run_id=meta.run_id,
        status=ConferenceStatus.LIVE if conf.live else ConferenceStatus.ENDED,
        state=state,
        created_at=meta.created_at,
        updated_at=updated_at,
        ended_at=conf.ended_at,
        owner_node=None if owner is None else owner[0],
        owner_epoch=None if owner is None else owner[1],
    )
    # The conference's last commit finishes its run in the same transaction: a crash never leaves
    # an ended conference with a running run.
    run_end = (
        None
        if conf.live or meta.run_id is None or not finish_run
        else run_end_of(conf, meta.run_id, record.updated_at)
    )
    claimed = sorted(live.addresses - live.committed_addresses)
    released = sorted(live.committed_addresses - live.addresses)
    return CommitRows(record, state, events, deliveries, run_end, claimed, released)


def callback_url(meta: ConferenceMeta, event: EventRecord) -> str | None:
    """Where an event's callback goes: recording events to their own URL, the others to the node's."""
    if event.type in RECORDING_EVENTS:
        return meta.settings.recording_events_url
    return meta.settings.callback_url
