"""The routes of Plivo's PHLO runner API, as the official SDKs call them."""

from __future__ import annotations

from starlette.responses import Response

from bridgeline.adapters.http.context import ApiRequest, AppContext, checked_address, mpc_node, owned_phlo
from bridgeline.adapters.http.errors import ApiError, new_api_id, ok
from bridgeline.adapters.http.schemas import MemberActionBody, MpcActionBody, RunBody
from bridgeline.app.views import plivo_time
from bridgeline.core import commands
from bridgeline.phlo.definition import MPC_NODE_TYPE

MPC_ACTIONS: dict[str, type[commands.Call | commands.WarmTransfer | commands.ColdTransfer]] = {
    "call": commands.Call,
    "warm_transfer": commands.WarmTransfer,
    "cold_transfer": commands.ColdTransfer,
}
MEMBER_ACTIONS: dict[
    str,
    type[
        commands.Hold
        | commands.Unhold
        | commands.Hangup
        | commands.ResumeCall
        | commands.VoicemailDrop
        | commands.AbortTransfer
    ],
] = {
    "hold": commands.Hold,
    "unhold": commands.Unhold,
    "hangup": commands.Hangup,
    "resume_call": commands.ResumeCall,
    "voicemail_drop": commands.VoicemailDrop,
    "abort_transfer": commands.AbortTransfer,
}


async def run_phlo(ctx: AppContext, api: ApiRequest) -> Response:
    if api.params["auth_id"] != api.auth_id:
        raise ApiError(404, f"PHLO {api.params['phlo_id']} not found in account {api.params['auth_id']}")
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    payload = api.parse(RunBody).model_dump()
    run = await ctx.runs.run(api.auth_id, phlo, definition, payload)
    return ok(
        {"api_id": run.run_id, "phlo_id": phlo.phlo_id, "phlo_run_id": run.run_id, "message": run.message},
        201,
    )


async def get_phlo(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, _ = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    return ok({"phlo_id": phlo.phlo_id, "name": phlo.name, "created_on": plivo_time(phlo.created_at)})


async def get_node(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    return ok(
        {
            "phlo_id": phlo.phlo_id,
            "node_id": node.node_id,
            "node_type": MPC_NODE_TYPE,
            "name": node.name,
            "created_on": plivo_time(phlo.created_at),
        }
    )


async def mpc_action(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    body = api.parse(MpcActionBody)
    command = MPC_ACTIONS[body.action](to=body.to, role=body.role, trigger_source=body.trigger_source)
    await ctx.conferences.mpc_action(api.auth_id, phlo.phlo_id, node.node_id, command)
    return ok({"api_id": new_api_id(), "error": ""}, 201)


async def member_action(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node = mpc_node(definition, phlo.phlo_id, api.params["node_type"], api.params["node_id"])
    address = checked_address("member_address", api.params["member_address"])
    action = api.parse(MemberActionBody).action
    await ctx.conferences.member_action(
        api.auth_id, phlo.phlo_id, node.node_id, MEMBER_ACTIONS[action](address)
    )
    return ok({"api_id": new_api_id(), "error": ""}, 201)


async def get_run(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, _ = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    run = await ctx.run_store.get_run(api.params["run_id"])
    if run is None or run.auth_id != api.auth_id or run.phlo_id != phlo.phlo_id:
        raise ApiError(404, f"run {api.params['run_id']} of PHLO {phlo.phlo_id} not found")
    return ok(
        {
            "phlo_id": run.phlo_id,
            "run_id": run.run_id,
            "status": run.status.value,
            "message": run.message,
            "payload": run.payload,
            "mpc_uuids": list(run.conference_ids),
            "created_on": plivo_time(run.created_at),
            "updated_on": plivo_time(run.updated_at),
        }
    )
