"""The conference service with real parts: the SQLite store and the sim carrier.

These check what the HTTP layer cannot see directly: inputs to one conference apply one at a
time, every change is committed with its events before effects run, and state survives a
reload from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sim.phones import AnswerMode, PhoneBehaviour
from bridgeline.adapters.store import SqlStore
from bridgeline.app.service import ConferenceService, NotFound
from bridgeline.core import snapshot
from bridgeline.core.commands import Call, Hangup, Hold, Unhold
from bridgeline.core.errors import ActionRefused
from bridgeline.core.model import MemberStatus, Role
from bridgeline.phlo.definition import NodeSettings

AGENT, CUSTOMER = "+14155550001", "+14155550002"
ACCOUNT, OTHER_ACCOUNT = "MA00000000000000000A", "MA00000000000000000B"


async def settle(predicate: Callable[[], object], within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def connected_pair(store: SqlStore) -> tuple[ConferenceService, SimCarrier, str]:
    carrier = SimCarrier(store, answer_delay_ms=0)
    service = ConferenceService(store, carrier)
    await carrier.start()
    conference_id = await service.start_conference(
        auth_id=ACCOUNT,
        phlo_id="p",
        node_id="n",
        run_id=None,
        settings=NodeSettings(max_participants=50),
        dials=[(AGENT, Role.AGENT), (CUSTOMER, Role.CUSTOMER)],
        sequential=True,
    )
    live = service.get_live(conference_id)
    assert live is not None
    await settle(lambda: live.conf.members.get(CUSTOMER) and live.conf.members[CUSTOMER].answered)
    async with live.lock:  # the answer's commit is done under it: the store holds what memory does
        pass
    return service, carrier, conference_id


async def test_concurrent_actions_apply_one_at_a_time_and_commit_every_event(store: SqlStore) -> None:
    service, carrier, conference_id = await connected_pair(store)
    actions: list[Hold | Unhold | Call] = [
        Hold(CUSTOMER) if i % 2 == 0 else Unhold(CUSTOMER) for i in range(40)
    ]
    actions += [Call(f"+1415555{1000 + i}", Role.AGENT, AGENT) for i in range(20)]

    async def attempt(action: Hold | Unhold | Call) -> bool:
        try:
            if isinstance(action, Call):
                await service.mpc_action(ACCOUNT, "p", "n", action)
            else:
                await service.member_action(ACCOUNT, "p", "n", action)
        except ActionRefused:
            return False
        return True

    results = await asyncio.gather(*(attempt(a) for a in actions))
    # Hold/unhold alternate in arrival order, so every one of them is allowed.
    assert all(results[:40])
    assert all(results[40:])
    live = service.get_live(conference_id)
    assert live is not None
    await settle(lambda: all(m.answered for m in live.conf.live_members()))
    # An input is applied in memory before its commit returns: wait until the store has the last one.
    events = await store.list_events(conference_id)
    deadline = asyncio.get_running_loop().time() + 5
    while len(events) < live.conf.next_seq - 1:
        assert asyncio.get_running_loop().time() < deadline, "the last commit never landed"
        await asyncio.sleep(0.005)
        events = await store.list_events(conference_id)

    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert sum(e.type == "member_held" for e in events) == 20
    assert sum(e.type == "member_unheld" for e in events) == 20
    record = await store.get_conference(conference_id)
    assert record is not None
    assert snapshot.dump(snapshot.load(record.state["core"])) == snapshot.dump(live.conf)
    assert record.state["core"]["next_seq"] == len(events) + 1
    await service.shutdown()
    await carrier.stop()


async def test_a_refused_action_changes_nothing_and_is_not_stored(store: SqlStore) -> None:
    service, carrier, conference_id = await connected_pair(store)
    before = await store.list_events(conference_id)
    with pytest.raises(ActionRefused, match="not on hold"):
        await service.member_action(ACCOUNT, "p", "n", Unhold(CUSTOMER))
    with pytest.raises(NotFound):
        await service.member_action(ACCOUNT, "p", "n", Hold("+19999999999"))
    assert await store.list_events(conference_id) == before
    await service.shutdown()
    await carrier.stop()


async def test_an_address_is_in_one_live_conference_per_node(store: SqlStore) -> None:
    service, carrier, _ = await connected_pair(store)
    with pytest.raises(ActionRefused, match="already in a live conference"):
        await service.start_conference(
            auth_id=ACCOUNT,
            phlo_id="p",
            node_id="n",
            run_id=None,
            settings=NodeSettings(),
            dials=[(CUSTOMER, Role.CUSTOMER)],
            sequential=True,
        )
    await service.shutdown()
    await carrier.stop()


async def test_phlo_ids_are_per_account_in_the_live_lookups(store: SqlStore) -> None:
    """Another account's PHLO with the same id, node and members is another conference."""
    service, carrier, conference_id = await connected_pair(store)
    theirs = await service.start_conference(
        auth_id=OTHER_ACCOUNT,
        phlo_id="p",
        node_id="n",
        run_id=None,
        settings=NodeSettings(),
        dials=[(AGENT, Role.AGENT), (CUSTOMER, Role.CUSTOMER)],
        sequential=False,
    )
    assert theirs != conference_id
    mine, other = service.find(ACCOUNT, "p", "n", CUSTOMER), service.find(OTHER_ACCOUNT, "p", "n", CUSTOMER)
    assert mine is not None and mine.meta.conference_id == conference_id
    assert other is not None and other.meta.conference_id == theirs
    assert [live.meta.conference_id for live in service.live_conferences(ACCOUNT, "p")] == [conference_id]
    assert [live.meta.conference_id for live in service.live_conferences(OTHER_ACCOUNT, "p", "n")] == [theirs]
    await service.member_action(OTHER_ACCOUNT, "p", "n", Hangup(AGENT))
    await service.member_action(OTHER_ACCOUNT, "p", "n", Hangup(CUSTOMER))
    assert service.find(OTHER_ACCOUNT, "p", "n", CUSTOMER) is None
    assert service.find(ACCOUNT, "p", "n", CUSTOMER) is mine  # my conference did not notice
    await service.shutdown()
    await carrier.stop()


async def test_restore_takes_back_live_conferences_from_the_store(store: SqlStore) -> None:
    service, carrier, conference_id = await connected_pair(store)
    await service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))
    await service.shutdown()
    await carrier.stop()

    carrier2 = SimCarrier(store, answer_delay_ms=0)
    service2 = ConferenceService(store, carrier2)
    assert await service2.restore() == 1
    live = service2.get_live(conference_id)
    assert live is not None
    assert live.conf.members[CUSTOMER].status is MemberStatus.ON_HOLD
    await service2.member_action(ACCOUNT, "p", "n", Unhold(CUSTOMER))
    await service2.member_action(ACCOUNT, "p", "n", Hangup(CUSTOMER))
    await service2.member_action(ACCOUNT, "p", "n", Hangup(AGENT))
    record = await store.get_conference(conference_id)
    assert record is not None and record.status == "ended"
    assert service2.get_live(conference_id) is None
    await service2.shutdown()
    await carrier2.stop()


async def test_the_timer_is_armed_again_only_when_the_next_deadline_moves(store: SqlStore) -> None:
    service, carrier, conference_id = await connected_pair(store)
    live = service.get_live(conference_id)
    assert live is not None and live.timer is not None
    max_duration_timer = live.timer
    await service.member_action(ACCOUNT, "p", "n", Hold(CUSTOMER))
    await service.member_action(ACCOUNT, "p", "n", Unhold(CUSTOMER))
    assert live.timer is max_duration_timer  # the deadline (the end of max_duration) did not move

    silent = "+14155550003"
    await carrier.configure_phone(ACCOUNT, silent, PhoneBehaviour(AnswerMode.NO_ANSWER))
    await service.mpc_action(ACCOUNT, "p", "n", Call(silent, Role.AGENT, AGENT))
    ringing = live.timer
    assert ringing is not max_duration_timer and max_duration_timer.cancelled()
    assert live.timer_deadline == live.conf.members[silent].ring_deadline

    await service.member_action(
        ACCOUNT, "p", "n", Hangup(silent)
    )  # the ring deadline goes: back to max_duration
    assert live.timer is not ringing and ringing.cancelled()
    assert live.timer_deadline == live.conf.next_deadline()
    await service.shutdown()
    await carrier.stop()
