"""What every route handler receives: typed services, not a bag of attributes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from bridgeline.adapters.carriers.sim.carrier import SimCarrier
from bridgeline.adapters.console.hub import EventHub
from bridgeline.adapters.http.auth import Authenticator
from bridgeline.adapters.http.errors import ApiError, invalid, missing
from bridgeline.adapters.http.forwarding import Forwarder
from bridgeline.adapters.http.idempotency import IdempotentRequests
from bridgeline.adapters.http.metrics import Metrics
from bridgeline.adapters.http.schemas import PlivoBody
from bridgeline.adapters.recordings.engine_files import WriterFiles
from bridgeline.app.phlos import PhloCache
from bridgeline.app.ports import ConferenceHistory, PhloStore, RecordingStore, RunStore
from bridgeline.app.records import Account, PhloRecord
from bridgeline.app.runs import RunService
from bridgeline.app.service import ConferenceService
from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.identifiers import ID_RULE, is_valid_id
from bridgeline.phlo.definition import MPC_NODE_TYPE, MpcNode, PhloDefinition


@dataclass(frozen=True, slots=True)
class AppContext:
    phlo_store: PhloStore  # PHLO rows; reads of known PHLOs go through `phlos`, the cache
    run_store: RunStore
    history: ConferenceHistory  # ended conferences, events and deliveries
    conferences: ConferenceService
    runs: RunService
    authenticator: Authenticator
    phlos: PhloCache
    sim: SimCarrier | None
    retries: IdempotentRequests  # the Idempotency-Key of the routes that honour it
    hub: EventHub | None = None  # the live console's event stream
    metrics: Metrics | None = None  # what /metrics renders
    forwarder: Forwarder | None = None  # a cluster: requests for other nodes' conferences go there
    ready: Callable[[], bool] = lambda: True  # /ready: the node's lease holds and it is not draining
    recordings: RecordingStore | None = None  # recording rows (the recordings API)
    recording_files: WriterFiles | None = None  # their files (downloads)
    public_url: str = ""  # the base of recordings' URLs


Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    request: Request
    account: Account | None
    params: dict[str, str]
    body: dict[str, Any]
    model: type[BaseModel] | None = None  # the route's body model (Route.body)

    @property
    def auth_id(self) -> str:
        assert self.account is not None
        return self.account.auth_id

    def parse(self, model: type[Model]) -> Model:
        """The body validated by the model that the route table documents for this route.

        A PlivoBody's first error answers as Plivo does; another model's ValidationError goes
        to the handler, which words it."""
        if model is not self.model:  # the documented schema and the validating one must be one object
            raise TypeError(f"the route documents {self.model!r} but validates with {model!r}")
        try:
            return model.model_validate(self.body)
        except ValidationError as exc:
            if not issubclass(model, PlivoBody):
                raise
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else "body"
            if error["type"] == "missing":
                raise missing(name) from None
            raise invalid(name, error["msg"]) from None


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
