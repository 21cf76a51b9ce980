"""Calls that survive the server's death: two real phones talk in a conference, the server is killed
with SIGKILL and started again on the same data directory, and the phones go on hearing each other
after its re-INVITEs (docs/sip.md, "Recovering calls after a restart or a move")."""

from __future__ import annotations

import time

from sipaudio import assert_hears
from sipkit import SipServer, wait_for
from siplab import ALL_TONES, CUSTOMER_HOLD, TONE_A, TONE_B, Lab

OWN_SERVER = True  # killed and restarted by its tests
RECOVERED_S = 15.0  # from the restart to the members' view being back (start, store, re-INVITE)


def others(*heard: int) -> list[int]:
    return [f for f in ALL_TONES if f not in heard]


def recovered(server: SipServer) -> float:
    return server.metrics().get("bridgeline_sip_recoveries_succeeded_total", 0.0)


def reinvites(messages: list[str]) -> int:
    return sum(1 for line in messages if line.startswith("INVITE"))


def test_a_killed_server_restarted_on_its_address_recovers_the_calls(lab: Lab, server: SipServer) -> None:
    agent = lab.baresip("agent", TONE_A)
    customer = lab.sipp_phone("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    before = lab.listen()

    server.kill()
    killed_at = time.time()
    server.restart()
    wait_for(lambda: recovered(server) == 2, RECOVERED_S, "both legs recovered")
    assert reinvites(customer.received()) == 2  # the call's INVITE and the recovery's
    lab.connected(phlo, agent.uri, hears=[customer.uri])
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    after = lab.listen(seconds=1.0, settle=1.0)

    mpc = lab.mpc(phlo)
    mpc.member(customer.uri).hold()  # the API still drives the recovered legs
    phlo.wait_member(customer.uri, status="on_hold")
    held = lab.listen()
    mpc.member(customer.uri).unhold()
    lab.connected(phlo, customer.uri, hears=[agent.uri])
    for phone in (customer, agent):
        mpc.member(phone.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"], customer)
    agent.wait_event("CALL_CLOSED")

    assert after[0] > killed_at
    for window in (before, after):
        assert_hears(lab.heard(agent, window), [TONE_B], others(TONE_B))
        assert_hears(lab.heard(customer, window), [TONE_A], others(TONE_A))
    assert_hears(lab.heard(customer, held), [CUSTOMER_HOLD], others(CUSTOMER_HOLD))


def test_a_node_on_another_address_takes_the_calls_and_the_phones_bye_reaches_it(
    lab: Lab, server: SipServer
) -> None:
    # Two baresip phones: sipp answers from the address of the first INVITE whatever the Via says,
    # so it never hears of a peer that moved; baresip answers where RFC 3261 18.2.2 says.
    agent = lab.baresip("agent", TONE_A)
    customer = lab.baresip("customer", TONE_B)
    lab.capture(agent, customer)
    phlo = lab.create_phlo()
    lab.run(phlo, agent=agent.uri, customer=customer.uri)
    view = lab.connected(phlo, customer.uri, hears=[agent.uri])
    lab.connected(phlo, agent.uri, hears=[customer.uri])

    old_port = server.sip_port
    server.kill()
    server.restart(sip_port=lab.ports.take())
    assert server.sip_port != old_port
    for phone in (agent, customer):  # each took the re-INVITE (a second CALL_ESTABLISHED-free update)
        lab.connected(phlo, phone.uri, timeout=RECOVERED_S)
    wait_for(
        lambda: server.metrics().get("bridgeline_sip_recoveries_succeeded_total") == 2,
        RECOVERED_S,
        "both legs recovered",
    )
    after = lab.listen(seconds=1.0, settle=1.0)

    agent.command("hangup")  # baresip's BYE goes to the Contact of the re-INVITE: the new address
    lab.left(phlo, agent.uri, "remote_hangup")
    lab.mpc(phlo).member(customer.uri).hangup()
    lab.assert_ended(phlo, view["mpc_uuid"])
    customer.wait_event("CALL_CLOSED")

    assert_hears(lab.heard(agent, after), [TONE_B], others(TONE_B))
    assert_hears(lab.heard(customer, after), [TONE_A], others(TONE_A))


def _header(message: str, name: str) -> str:
    for line in message.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    raise AssertionError(f"no {name} in:\n{message}")
