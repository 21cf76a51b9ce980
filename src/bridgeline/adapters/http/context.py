"""What every route handler receives: typed services, not a bag of attributes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from bridgeline.adapters.carrier_sim import SimCarrier
from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.http.auth import Authenticator
from bridgeline.adapters.http.errors import ApiError, invalid, missing
from bridgeline.adapters.metrics import Metrics
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import Store
from bridgeline.app.records import Account, PhloRecord
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.identifiers import ID_RULE, is_valid_id
from bridgeline.phlo.definition import MPC_NODE_TYPE, MpcNode, PhloDefinition


@dataclass(frozen=True, slots=True)
class AppContext:
    store: Store
    conferences: ConferenceService
    runs: RunService
    authenticator: Authenticator
    phlos: PhloCache
    sim: SimCarrier | None
    hub: EventHub | None = None  # the live console's event stream
    metrics: Metrics | None = None  # what /metrics renders


@dataclass(frozen=True, slots=True)
class ApiRequest:
    request: Request
    account: Account | None
    params: dict[str, str]
    body: dict[str, Any]

    @property
    def auth_id(self) -> str:
        assert self.account is not None
        return self.account.auth_id

    def text(self, name: str, *, required: bool = True) -> str | None:
        """A string field of the body; numbers are accepted as their text (`to: 14155550100`)."""
        value = self.body.get(name)
        if value is None or value == "":
            if required:
                raise missing(name)
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise invalid(name, f"{name} expects a string.")
        return str(value).strip()

    def address(self, name: str) -> str:
        value = self.text(name)
        assert value is not None
        return checked_address(name, value)


def checked_address(name: str, value: str) -> str:
    try:
        classify(value)
    except InvalidAddress as exc:
        raise invalid(name, str(exc)) from exc
    return value


async def owned_phlo(ctx: AppContext, auth_id: str, phlo_id: str) -> tuple[PhloRecord, PhloDefinition]:
    """The PHLO if it exists in this account; another account's PHLO is as good as missing."""
    if not is_valid_id(phlo_id):  # no PHLO can have it: nothing to look up
        raise ApiError(404, f"PHLO {phlo_id[:80]!r} not found: {ID_RULE}")
    entry = await ctx.phlos.get(auth_id, phlo_id)
    if entry is None:
        raise ApiError(404, f"PHLO {phlo_id} not found")
    return entry


def mpc_node(definition: PhloDefinition, phlo_id: str, node_type: str, node_id: str) -> MpcNode:
    if not is_valid_id(node_id):
        raise ApiError(404, f"PHLO {phlo_id} has no node {node_id[:80]!r}: {ID_RULE}")
    node = next((n for n in definition.nodes if n.node_id == node_id), None)
    if node_type != MPC_NODE_TYPE or node is None:
        raise ApiError(404, f"PHLO {phlo_id} has no {node_type} node {node_id}")
    return node
