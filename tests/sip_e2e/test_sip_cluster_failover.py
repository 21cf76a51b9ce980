"""A node lost in the middle of a SIP call (issue #12): two real phones in a conference owned by node b,
two nodes on one PostgreSQL database. b is killed (SIGKILL), paused past its lease and resumed (SIGSTOP,
SIGCONT: split brain) or drained (SIGTERM); node a takes the conference over and re-INVITEs both phones
from its own SIP address and RTP ports, and the phones go on hearing each other (by spectrum); hold and
a transfer still work, driven through a. A resumed b must send nothing for the conference (by the
capture of its SIP and RTP ports) and commit nothing for it (by the store)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clusterkit import Cluster, database_url
from e2ekit import Phlo
from sipaudio import assert_hears
from sipcluster import TAKEN_OVER_S, dialogs, drain, drive_through, recovered_by, sip_nodes
from sipkit import Baresip, Ports, SipServer, wait_for
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, TONE_C, Lab, Tones

pytestmark = pytest.mark.postgres
__all__ = ["database_url"]  # a fixture, used by name


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


@pytest.fixture
def nodes(tmp_path: Path, ports: Ports, database_url: str) -> Iterator[dict[str, SipServer]]:
    with sip_nodes(tmp_path, ports, database_url, ("b", "a")) as started:  # b's run stays at b
        yield started


@pytest.fixture
def store(tmp_path: Path, database_url: str) -> Cluster:
    """The cluster kit's view of the nodes' database (it starts nothing here)."""
    return Cluster(tmp_path / "store", database_url)


def phones(lab: Lab) -> tuple[Baresip, Baresip]:
    # baresip answers a moved peer where RFC 3261 18.2.2 says (sipp keeps the first INVITE's source).
    return lab.baresip("agent", TONE_A), lab.baresip("customer", TONE_B)


def talking(lab: Lab, agent: Baresip, customer: Baresip) -> tuple[Phlo, str]:
    """A conference run on the lab's node in which the two phones hear each other: (phlo, mpc_uuid)."""
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    return phlo, str(view["mpc_uuid"])


def test_a_killed_nodes_sip_calls_go_on_at_the_node_that_takes_them(
    nodes: dict[str, SipServer], ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    lab = Lab(b, ports, tones, tmp_path)
    try:
        agent, customer = phones(lab)
        lab.capture(agent, customer)
        phlo, mpc_uuid = talking(lab, agent, customer)
        before = lab.listen()

        b.kill()
        recovered_by(a)
        assert a.metrics().get("bridgeline_node_takeovers_total", 0) >= 1
        at_a = drive_through(lab, a, phlo)
        lab.connected(at_a, agent.uri, hears=[customer.uri])
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        after = lab.listen(seconds=1.0, settle=1.0)  # the media now flows through a's RTP ports

        mpc = lab.mpc(at_a)
        mpc.member(customer.uri).hold()
        at_a.wait_member(customer.uri, status="on_hold")
        held = lab.listen()
        mpc.member(customer.uri).unhold()
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        agent.command("hangup")  # its BYE goes to the Contact of a's re-INVITE
        lab.left(at_a, agent.uri, "remote_hangup")
        mpc.member(customer.uri).hangup()
        lab.assert_ended(at_a, mpc_uuid)
        customer.wait_event("CALL_CLOSED")

        heard_through_the_move(lab, b, a, agent, customer, before, after, held)  # b died
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"


def test_a_paused_owner_resumes_fenced_and_sends_and_commits_nothing_for_the_calls_it_lost(
    nodes: dict[str, SipServer], store: Cluster, ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    assert b.proc is not None
    lab = Lab(b, ports, tones, tmp_path)
    try:
        agent, customer = phones(lab)
        # b's own SIP and RTP ports too: whatever b sends, to anyone, is in the capture
        lab.capture(agent, customer, ports=(b.sip_port, *b.rtp_range))
        phlo, mpc_uuid = talking(lab, agent, customer)
        saved_by_b = dialogs(store, mpc_uuid)
        assert len(saved_by_b) == 2, saved_by_b

        os.killpg(b.proc.pid, signal.SIGSTOP)  # the node (and its `timeout` wrapper): a takes the calls over
        try:
            recovered_by(a)
            at_a = drive_through(lab, a, phlo)
            lab.connected(at_a, agent.uri, hears=[customer.uri])
            lab.connected(at_a, customer.uri, hears=[agent.uri])
            wait_for(  # a saved both dialogs it recovered (its re-INVITE's CSeq is 100 above b's)
                lambda: all(
                    dialog["local_seq"] > saved_by_b[leg]["local_seq"] + 100
                    for leg, dialog in dialogs(store, mpc_uuid).items()
                ),
                TAKEN_OVER_S,
                "a to save the recovered dialogs",
            )
            owner, seqs, saved_by_a = store.owner(mpc_uuid), store.seqs(mpc_uuid), dialogs(store, mpc_uuid)
            assert owner == ("a", store.epoch("a"))
        finally:
            resumed_at = time.time()
            os.killpg(b.proc.pid, signal.SIGCONT)
        # b wakes up fenced, finds its lease lost, forgets the conference and starts a new life
        wait_for(lambda: store.epoch("b") == 2, TAKEN_OVER_S, "b to register again with a new epoch")
        wait_for(
            lambda: (
                b.metrics().get("bridgeline_node_conferences_owned") == 0
                and b.metrics().get("bridgeline_node_lease_held") == 1
            ),
            TAKEN_OVER_S,
            "b to hold its new lease and own nothing",
        )
        awake = lab.listen(seconds=1.5, settle=1.0)  # b awake and serving: the phones hear a's media
        assert "lease_lost" in b.stderr()

        # The store: b committed nothing for the conference after it woke up.
        assert store.owner(mpc_uuid) == owner
        assert store.seqs(mpc_uuid) == seqs
        assert dialogs(store, mpc_uuid) == saved_by_a

        mpc = lab.mpc(at_a)  # the new owner still drives the calls
        mpc.member(customer.uri).hold()
        at_a.wait_member(customer.uri, status="on_hold")
        held = lab.listen()
        mpc.member(customer.uri).unhold()
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        for phone in (agent, customer):
            mpc.member(phone.uri).hangup()
        lab.assert_ended(at_a, mpc_uuid)
        for phone in (agent, customer):
            phone.wait_event("CALL_CLOSED")  # a's BYE reached them

        # The capture: b sent not one datagram, SIP or RTP, from the moment it resumed.
        from_b = [
            d
            for d in lab.stop_capture()
            if d.at >= resumed_at and (d.sport == b.sip_port or d.sport in b.rtp_range)
        ]
        assert not from_b, f"b sent {len(from_b)} datagrams after it resumed, first: {from_b[0]}"
        assert assert_sent_before(lab, b, resumed_at) > 0  # the capture did see b while it owned the call
        assert_hears(lab.heard(agent, awake), [TONE_B], others(TONE_B))
        assert_hears(lab.heard(customer, awake), [TONE_A], others(TONE_A))
        assert_hears(lab.heard(customer, held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"


def heard_through_the_move(
    lab: Lab,
    old: SipServer,
    new: SipServer,
    agent: Baresip,
    customer: Baresip,
    before: tuple[float, float],
    after: tuple[float, float],
    held: tuple[float, float],
) -> None:
    """Each phone heard the other's tone from the old owner, then from the new one, and the held
    customer its hold music from the new one."""
    lab.server = old
    assert_hears(lab.heard(agent, before), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, before), [TONE_A], others(TONE_A))
    lab.server = new
    assert_hears(lab.heard(agent, after), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, after), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(customer, held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))


def assert_sent_before(lab: Lab, node: SipServer, moment: float) -> int:
    """How many datagrams the capture saw leave node's SIP and RTP ports before `moment`."""
    return sum(
        1
        for d in lab.stop_capture()
        if d.at < moment and (d.sport == node.sip_port or d.sport in node.rtp_range)
    )


def test_a_drained_nodes_sip_calls_move_with_a_reinvite_and_it_exits_cleanly(
    nodes: dict[str, SipServer], store: Cluster, ports: Ports, tones: Tones, tmp_path: Path
) -> None:
    a, b = nodes["a"], nodes["b"]
    assert b.proc is not None
    lab = Lab(b, ports, tones, tmp_path)
    try:
        agent, customer = phones(lab)
        target = lab.sipp_phone("target", TONE_C, ring_ms=300)  # dialed by a: a new dialog from a
        lab.capture(agent, customer, target)
        phlo, mpc_uuid = talking(lab, agent, customer)
        before = lab.listen()

        drain(b)  # SIGTERM: hand the call over, then exit
        assert b.proc.wait(timeout=TAKEN_OVER_S) == 0, b.stderr()[-4000:]
        assert "conference_handed_off" in b.stderr() and "lease_lost" not in b.stderr()
        recovered_by(a)
        assert store.owner(mpc_uuid) == ("a", store.epoch("a"))
        at_a = drive_through(lab, a, phlo)
        lab.connected(at_a, agent.uri, hears=[customer.uri])
        lab.connected(at_a, customer.uri, hears=[agent.uri])
        after = lab.listen(seconds=1.0, settle=1.0)

        mpc = lab.mpc(at_a)
        mpc.member(customer.uri).hold()
        at_a.wait_member(customer.uri, status="on_hold")
        held = lab.listen()
        mpc.member(customer.uri).unhold()
        lab.connected(at_a, customer.uri, hears=[agent.uri])

        mpc.cold_transfer(agent.uri, target.uri, "agent")  # a dials the target and drops the agent
        lab.left(at_a, agent.uri, "transferred")
        agent.wait_event("CALL_CLOSED")  # a's BYE, in the dialog it recovered
        lab.connected(at_a, customer.uri, hears=[target.uri])
        transferred = lab.listen()
        mpc.member(customer.uri).hangup()
        mpc.member(target.uri).hangup()
        lab.assert_ended(at_a, mpc_uuid, target)
        customer.wait_event("CALL_CLOSED")

        heard_through_the_move(lab, b, a, agent, customer, before, after, held)  # b drained
        assert_hears(lab.heard(customer, transferred), [TONE_C], others(TONE_C))
        assert_hears(lab.heard(target, transferred), [TONE_B], others(TONE_B))
    finally:
        leaked = lab.close()
        assert not leaked, f"processes left behind: {leaked}"
