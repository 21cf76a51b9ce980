"""The routes of Plivo's PHLO runner API, as the official SDKs call them."""

from __future__ import annotations

from starlette.responses import Response

from bridgeline.adapters.http.context import ApiRequest, AppContext, checked_address, mpc_node, owned_phlo
from bridgeline.adapters.http.errors import ApiError, invalid, new_api_id, ok
from bridgeline.adapters.http.schemas import MemberActionBody, MpcActionBody, RunBody
from bridgeline.app.views import plivo_time
from bridgeline.core import commands
from bridgeline.phlo.definition import MPC_NODE_TYPE

MpcCommand = commands.Call | commands.WarmTransfer | commands.ColdTransfer
MPC_ACTIONS: dict[str, type[MpcCommand]] = {
    "call": commands.Call,
    "warm_transfer": commands.WarmTransfer,
    "cold_transfer": commands.ColdTransfer,
}
MEMBER_ACTIONS: dict[
    str,
    type[
        commands.Hold
        | commands.Unhold
        | commands.Mute
        | commands.Unmute
        | commands.Hangup
        | commands.ResumeCall
        | commands.VoicemailDrop
        | commands.AbortTransfer
    ],
] = {
    "hold": commands.Hold,
    "unhold": commands.Unhold,
    "mute": commands.Mute,
    "unmute": commands.Unmute,
    "hangup": commands.Hangup,
    "resume_call": commands.ResumeCall,
    "voicemail_drop": commands.VoicemailDrop,
    "abort_transfer": commands.AbortTransfer,
}
# The legacy Conference Bridge node's member URI (`…/conference_bridge/{node}/members/{addr}`), where the
# Python SDK's `client.phlo.member(...)` posts by default: served for MPC nodes with that node's own
# vocabulary; an MPC-only action there is refused with the URI to use.
LEGACY_NODE_TYPE = "conference_bridge"
LEGACY_ACTIONS = frozenset({"mute", "unmute", "hangup"})


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
    if body.action in MPC_ACTIONS:  # the body's check made `to` present for these
        assert body.to is not None
        command = MPC_ACTIONS[body.action](to=body.to, role=body.role, trigger_source=body.trigger_source)
        await ctx.conferences.mpc_action(api.auth_id, phlo.phlo_id, node.node_id, command)
    else:  # resume_call / abort_transfer: the same path as on the initiator's member URI
        await ctx.conferences.member_action(
            api.auth_id, phlo.phlo_id, node.node_id, MEMBER_ACTIONS[body.action](body.trigger_source)
        )
    return ok({"api_id": new_api_id(), "error": ""}, 201)


async def member_action(ctx: AppContext, api: ApiRequest) -> Response:
    phlo, definition = await owned_phlo(ctx, api.auth_id, api.params["phlo_id"])
    node_type = api.params["node_type"]
    legacy = node_type == LEGACY_NODE_TYPE
    node = mpc_node(definition, phlo.phlo_id, MPC_NODE_TYPE if legacy else node_type, api.params["node_id"])
    address = checked_address("member_address", api.params["member_address"])
    body = api.parse(MemberActionBody)
    if legacy and body.action not in LEGACY_ACTIONS:
        raise invalid(
            "action",
            f"{LEGACY_NODE_TYPE} takes {', '.join(sorted(LEGACY_ACTIONS))}; {body.action} is a "
            f"{MPC_NODE_TYPE} action: POST it to /v1/phlo/{phlo.phlo_id}/{MPC_NODE_TYPE}/{node.node_id}"
            "/members/{member_address} (Python SDK: node_type='multi_party_call').",
        )
    if body.action in MPC_ACTIONS:  # Java's updater with .member(addr): the path names the trigger_source
        assert body.to is not None  # the body's check made `to` present for these
        if body.trigger_source is not None and body.trigger_source != address:
            raise invalid(
                "trigger_source",
                f"{body.trigger_source} is not the member in the path ({address}), who asks for it.",
            )
        command = MPC_ACTIONS[body.action](to=body.to, role=body.role, trigger_source=address)
        await ctx.conferences.mpc_action(api.auth_id, phlo.phlo_id, node.node_id, command)
        return ok({"api_id": new_api_id(), "error": ""}, 201)
    await ctx.conferences.member_action(
        api.auth_id, phlo.phlo_id, node.node_id, MEMBER_ACTIONS[body.action](address)
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
