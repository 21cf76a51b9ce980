"""Bridgeline's own routes: PHLO definitions, live conference state, and the phone simulator."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.carriers.sim.phones import AnswerMode, PhoneBehaviour
from bridgeline.adapters.http.context import ApiRequest, AppContext, checked_address, mpc_node, owned_phlo
from bridgeline.adapters.http.errors import ApiError, ok
from bridgeline.adapters.http.schemas import SimPhoneBody
from bridgeline.app.records import PhloRecord
from bridgeline.app.views import conference_view, member_view, plivo_time
from bridgeline.core import snapshot
from bridgeline.phlo.definition import MPC_NODE_TYPE, PhloDefinition

RECENT_CONFERENCES = 20


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "invalid PHLO definition: " + "; ".join(parts)


def phlo_summary(phlo: PhloRecord) -> dict[str, Any]:
    definition = PhloDefinition.model_validate(phlo.definition)
    return {
        "phlo_id": phlo.phlo_id,
        "name": phlo.name,
        "created_on": plivo_time(phlo.created_at),
        "nodes": [
            {"node_id": n.node_id, "node_type": MPC_NODE_TYPE, "name": n.name} for n in definition.nodes
        ],
    }


async def create_phlo(ctx: AppContext, api: ApiRequest) -> Response:
    try:
        definition = api.parse(PhloDefinition)
    except ValidationError as exc:
        raise ApiError(400, describe_validation_error(exc)) from None
    if definition.run is not None:
        for dial in definition.run.dial:
            if "{{" not in dial.to:
                checked_address("run.dial.to", dial.to)
    phlo_id = definition.phlo_id or str(uuid.uuid4())
    if await ctx.phlo_store.get_phlo(api.auth_id, phlo_id) is not None:
        raise ApiError(409, f"a PHLO with phlo_id {phlo_id} already exists")
    stored = definition.model_dump(mode="json", exclude={"phlo_id"})
    phlo = PhloRecord(phlo_id, api.auth_id, definition.name, stored, time.time())
    await ctx.phlo_store.create_phlo(phlo)
    return ok(phlo_summary(phlo), 201)


async def list_phlos(ctx: AppContext, api: ApiRequest) -> Response:
    phlos = await ctx.phlo_store.list_phlos(api.auth_id)
    return ok({"meta": {"count": len(phlos)}, "objects": [phlo_summary(p) for p in phlos]})


async def delete_phlo(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, _ = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    live = ctx.conferences.live_conferences(api.auth_id, phlo.phlo_id)
    if live:
        raise ApiError(400, f"PHLO {phlo.phlo_id} has {len(live)} live conference(s); hang them up first")
    await ctx.phlo_store.delete_phlo(api.auth_id, phlo.phlo_id)
    ctx.phlos.forget(api.auth_id, phlo.phlo_id)
    return ok({"phlo_id": phlo.phlo_id, "message": "PHLO deleted"})


async def list_instances(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    objects = [
        conference_view(live.conf, phlo_id=phlo.phlo_id, node_id=node.node_id, run_id=live.meta.run_id)
        for live in ctx.conferences.live_conferences(api.auth_id, phlo.phlo_id, node.node_id)
    ]
    seen = {o["mpc_uuid"] for o in objects}
    recent = await ctx.history.list_conferences(
        api.auth_id, phlo.phlo_id, node.node_id, limit=RECENT_CONFERENCES
    )
    for record in recent:
        if record.conference_id not in seen:
            conf = snapshot.load(record.state["core"])
            objects.append(
                conference_view(conf, phlo_id=phlo.phlo_id, node_id=node.node_id, run_id=record.run_id)
            )
    return ok({"meta": {"count": len(objects)}, "objects": objects})


async def get_member(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    address = checked_address("member_address", api.params["member_address"])
    live = ctx.conferences.find(api.auth_id, phlo.phlo_id, node.node_id, address)
    if live is not None and address in live.conf.members:
        member = live.conf.members[address]
        return ok(member_view(live.conf, member, phlo_id=phlo.phlo_id, node_id=node.node_id))
    # Not live: the member's last membership in a recent conference of this node, if any.
    recent = await ctx.history.list_conferences(
        api.auth_id, phlo.phlo_id, node.node_id, limit=RECENT_CONFERENCES
    )
    for record in recent:
        conf = snapshot.load(record.state["core"])
        if address in conf.members:
            return ok(member_view(conf, conf.members[address], phlo_id=phlo.phlo_id, node_id=node.node_id))
    raise ApiError(404, f"member {address} not found in node {node.node_id}")


def _sim(ctx: AppContext) -> SimCarrier:
    if ctx.sim is None:
        raise ApiError(404, "the phone simulator is only available with --carrier sim")
    return ctx.sim


def _phone_view(sim: SimCarrier, auth_id: str, address: str) -> dict[str, Any]:
    """The account's view of a virtual phone: its own setting and the calls of its own conferences."""
    behaviour = sim.phone(auth_id, address)
    return {"address": address, **behaviour.to_json(), "calls": sim.calls_of(auth_id, address)}


async def put_sim_phone(ctx: AppContext, api: ApiRequest) -> Response:
    sim = _sim(ctx)
    address = checked_address("address", api.params["address"])
    body = api.parse(SimPhoneBody)
    await sim.configure_phone(
        api.auth_id, address, PhoneBehaviour(AnswerMode(body.answer), body.answer_delay_ms)
    )
    return ok(_phone_view(sim, api.auth_id, address))


async def get_sim_phone(ctx: AppContext, api: ApiRequest) -> Response:
    """A phone exists for an account once it configured it or dialed it; any other is not found, so
    the answer is the same whether or not another account uses the address."""
    sim = _sim(ctx)
    address = checked_address("address", api.params["address"])
    view = _phone_view(sim, api.auth_id, address)
    if not view["calls"] and not sim.configured(api.auth_id, address):
        raise ApiError(404, f"phone {address} not found")
    return ok(view)


async def hang_up_sim_phone(ctx: AppContext, api: ApiRequest) -> Response:
    sim = _sim(ctx)
    address = checked_address("address", api.params["address"])
    dropped = sim.hang_up_phone(api.auth_id, address)
    if dropped == 0:
        raise ApiError(404, f"phone {address} has no call to hang up")
    return ok({"address": address, "calls_dropped": dropped}, 201)
