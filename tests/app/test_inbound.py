"""Inbound calls run the PHLO of the account their route names: PHLO ids are per account, so a route
says whose "support" it means (the main account's when it names none, see main.route_inbound_calls)."""

from __future__ import annotations

import pytest

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sip.carrier import SipCarrier
from bridgeline.adapters.carriers.sip.carrier_legs import InboundCall, address_of
from bridgeline.adapters.carriers.sip.settings import SipSettings
from bridgeline.adapters.store import SqlStore
from bridgeline.app.inbound import InboundRefusal, start_inbound_run
from bridgeline.app.phlos import PhloCache
from bridgeline.app.records import PhloRecord
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.core.address import classify
from bridgeline.core.model import Role
from bridgeline.main import route_inbound_calls
from bridgeline.sip.uri import parse_uri

MAIN, OTHER = "MA00000000000000000A", "MA00000000000000000B"
CALLER = "+14155550100"


def support(auth_id: str, agent: str) -> PhloRecord:
    definition = {
        "name": "support",
        "nodes": [{"node_id": "node-1", "name": "Multi-Party Call_1", "type": "multi_party_call"}],
        "run": {"dial": [{"to": agent, "role": "agent"}]},
    }
    return PhloRecord("support", auth_id, "support", definition, 1.0)


async def test_an_inbound_call_runs_the_phlo_of_the_routes_account(store: SqlStore) -> None:
    await store.create_phlo(support(MAIN, "+14155550001"))
    await store.create_phlo(support(OTHER, "+14155550002"))
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    runs, phlos = RunService(store, store, conferences), PhloCache(store)
    started = {}
    for auth_id in (OTHER, MAIN):
        conference_id = await start_inbound_run(
            phlos,
            runs,
            auth_id=auth_id,
            phlo_id="support",
            payload_template={},
            caller=CALLER,
            dialed="+14150000000",
            role=Role.CUSTOMER,
            leg_id=f"in-{auth_id}",
        )
        assert isinstance(conference_id, str)
        started[auth_id] = conference_id
    for auth_id, agent in ((MAIN, "+14155550001"), (OTHER, "+14155550002")):
        live = conferences.get_live(started[auth_id])
        assert live is not None and live.meta.auth_id == auth_id
        assert set(live.conf.members) == {CALLER, agent}
    missing = await start_inbound_run(
        phlos,
        runs,
        auth_id="MA00000000000000000C",  # an account without that PHLO: refused, nobody else's runs
        phlo_id="support",
        payload_template={},
        caller="+14155550199",
        dialed="+14150000000",
        role=Role.CUSTOMER,
        leg_id="in-c",
    )
    assert missing is InboundRefusal.UNROUTABLE
    await conferences.shutdown()
    await carrier.stop()


async def test_a_call_that_needs_an_address_already_in_a_live_conference_is_busy(store: SqlStore) -> None:
    """Two callers to one number whose run dials the same agent: the second is busy (486 at the SIP
    carrier), its run fails and nothing of it is live; the first call is untouched."""
    await store.create_phlo(support(MAIN, "+14155550001"))
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    runs, phlos = RunService(store, store, conferences), PhloCache(store)
    outcomes = [
        await start_inbound_run(
            phlos,
            runs,
            auth_id=MAIN,
            phlo_id="support",
            payload_template={},
            caller=caller,
            dialed="+14150000000",
            role=Role.CUSTOMER,
            leg_id=f"in-{caller}",
        )
        for caller in ("+14155550101", "+14155550102")
    ]
    assert isinstance(outcomes[0], str) and outcomes[1] is InboundRefusal.BUSY
    assert [c.meta.conference_id for c in conferences.live_conferences(MAIN, "support")] == [outcomes[0]]
    assert len(await store.running_runs()) == 1  # the busy call's run failed at once
    await conferences.shutdown()
    await carrier.stop()


def test_an_inbound_route_names_its_account_or_none() -> None:
    settings = SipSettings.model_validate(
        {
            "inbound": [
                {"number": "+14150000001", "phlo_id": "support", "auth_id": OTHER},
                {"number": "+14150000002", "phlo_id": "support"},
            ]
        }
    )
    first, second = settings.route_for("+14150000001"), settings.route_for("+14150000002")
    assert first is not None and first.auth_id == OTHER
    assert second is not None and second.auth_id is None


async def test_an_inbound_caller_outside_the_address_grammar_is_refused(store: SqlStore) -> None:
    await store.create_phlo(support(MAIN, "+14155550001"))
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    runs, phlos = RunService(store, store, conferences), PhloCache(store)
    for caller in ("+1415555010\u0660", "sip:a b@example.com", "sip:zoë@example.com", "alice\n"):
        refused = await start_inbound_run(
            phlos,
            runs,
            auth_id=MAIN,
            phlo_id="support",
            payload_template={"customer": "{{from}}"},
            caller=caller,
            dialed="+14150000000",
            role=Role.CUSTOMER,
            leg_id="in-1",
        )
        assert refused is InboundRefusal.UNROUTABLE, caller
    assert conferences.live_conferences(MAIN, "support") == []
    await conferences.shutdown()
    await carrier.stop()


@pytest.mark.parametrize(
    ("from_uri", "address"),
    [
        ("sip:+14155551234@trunk.example", "+14155551234"),
        ("sip:zoë@example.com", "sip:zo%C3%AB@example.com"),  # before: the raw non-ASCII user part
        ("sip:+1415555123\u0664@trunk.example", "sip:+1415555123%D9%A4@trunk.example"),  # not E.164
        ("sip:a;b?c@example.com", "sip:a%3Bb%3Fc@example.com"),  # ';' '?' would start parameters
        ("sip:example.com", "sip:example.com"),
    ],
)
def test_an_inbound_callers_address_is_its_escaped_sip_uri(from_uri: str, address: str) -> None:
    assert address_of(parse_uri(from_uri)) == address
    classify(address)  # fits the address grammar


async def test_an_inbound_route_without_an_account_runs_the_main_accounts_phlo(store: SqlStore) -> None:
    """main.route_inbound_calls: `inbound[].auth_id` picks whose "support" a number runs."""
    await store.create_phlo(support(MAIN, "+14155550001"))
    await store.create_phlo(support(OTHER, "+14155550002"))
    routes = [
        {"number": "+14150000001", "phlo_id": "support"},
        {"number": "+14150000002", "phlo_id": "support", "auth_id": OTHER},
    ]
    sip = SipCarrier(SipSettings.model_validate({"inbound": routes}))  # never started: no sockets
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    route_inbound_calls(sip, PhloCache(store), RunService(store, store, conferences), MAIN)
    assert sip._inbound is not None
    for dialed, owner, agent in (
        ("+14150000001", MAIN, "+14155550001"),
        ("+14150000002", OTHER, "+14155550002"),
    ):
        conference_id = await sip._inbound(InboundCall(f"in-{dialed}", CALLER, dialed))
        assert isinstance(conference_id, str)
        live = conferences.get_live(conference_id)
        assert live is not None and live.meta.auth_id == owner
        assert set(live.conf.members) == {CALLER, agent}
    await conferences.shutdown()
    await carrier.stop()
