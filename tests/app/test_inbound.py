"""Inbound calls run the PHLO of the account their route names: PHLO ids are per account, so a route
says whose "support" it means (the main account's when it names none, see main.route_inbound_calls)."""

from __future__ import annotations

from bridgeline.adapters.carrier_sim import SimCarrier
from bridgeline.adapters.sip_config import SipSettings
from bridgeline.app.inbound import start_inbound_run
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Store
from bridgeline.app.records import PhloRecord
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.core.model import Role

MAIN, OTHER = "MA00000000000000000A", "MA00000000000000000B"
CALLER = "+14155550100"


def support(auth_id: str, agent: str) -> PhloRecord:
    definition = {
        "name": "support",
        "nodes": [{"node_id": "node-1", "name": "Multi-Party Call_1", "type": "multi_party_call"}],
        "run": {"dial": [{"to": agent, "role": "agent"}]},
    }
    return PhloRecord("support", auth_id, "support", definition, 1.0)


async def test_an_inbound_call_runs_the_phlo_of_the_routes_account(store: Store) -> None:
    await store.create_phlo(support(MAIN, "+14155550001"))
    await store.create_phlo(support(OTHER, "+14155550002"))
    carrier = SimCarrier(store, answer_delay_ms=0)
    conferences = ConferenceService(store, carrier)
    await carrier.start()
    runs, phlos = RunService(store, conferences), PhloCache(store)
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
        assert conference_id is not None
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
    assert missing is None
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
