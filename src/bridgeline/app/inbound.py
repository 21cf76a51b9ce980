"""Inbound calls: a call to a configured number starts a PHLO run that adopts the caller's leg.

This is the MPC node's other dialing option ("the customer dials in, the agent is dialed in"):
the caller is already connected when the conference starts, and the run dials the others.
A call that cannot start a run is refused, saying why (`InboundRefusal`); the carrier answers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import structlog

from bridgeline.app.phlos import PhloCache
from bridgeline.app.runs import RunService
from bridgeline.core.address import InvalidAddress, classify
from bridgeline.core.errors import ActionRefused, AddressInUse
from bridgeline.core.model import Role
from bridgeline.phlo.template import TemplateError, fill

log = structlog.get_logger(__name__)


class InboundRefusal(StrEnum):
    """Why an inbound call starts no run (the SIP carrier answers 404 and 486, docs/sip.md)."""

    UNROUTABLE = "unroutable"  # no route or PHLO, a caller outside the grammar, a payload that cannot fill it
    # A member address the run needs (the caller's, or a party it dials) is in a live conference: of
    # this node, or of another node of the cluster (exactly one of two runs racing for it wins).
    BUSY = "busy"


async def start_inbound_run(
    phlos: PhloCache,
    runs: RunService,
    *,
    auth_id: str,
    phlo_id: str,
    payload_template: Mapping[str, str],
    caller: str,
    dialed: str,
    role: Role,
    leg_id: str,
) -> str | InboundRefusal:
    """Run the PHLO for an inbound call; the conference id, or why the call is refused."""
    try:  # the caller's address comes off the wire: the same grammar as the API's addresses
        classify(caller)
    except InvalidAddress as exc:
        log.warning("inbound_caller_invalid", caller=caller[:80], dialed=dialed[:80], error=str(exc))
        return InboundRefusal.UNROUTABLE
    entry = await phlos.get(auth_id, phlo_id)
    if entry is None:
        log.warning("inbound_phlo_missing", auth_id=auth_id, phlo_id=phlo_id, dialed=dialed)
        return InboundRefusal.UNROUTABLE
    phlo, definition = entry
    variables = {"from": caller, "to": dialed}
    try:
        payload = {key: fill(value, variables) for key, value in payload_template.items()}
        run = await runs.run(phlo.auth_id, phlo, definition, payload, answered=(caller, role, leg_id))
    except AddressInUse as exc:
        log.info("inbound_run_busy", phlo_id=phlo_id, caller=caller, error=str(exc))
        return InboundRefusal.BUSY
    except (ActionRefused, TemplateError) as exc:
        log.warning("inbound_run_refused", phlo_id=phlo_id, caller=caller, error=str(exc))
        return InboundRefusal.UNROUTABLE
    # Debug, not info: one line per call is noise at hundreds of calls per second, and the
    # conference's own events (logged by the service) already record the call.
    log.debug("inbound_run_started", phlo_id=phlo_id, caller=caller, dialed=dialed, run_id=run.run_id)
    return run.conference_ids[0] if run.conference_ids else InboundRefusal.UNROUTABLE
