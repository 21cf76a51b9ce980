"""Phones registered through any node, reachable from every node (several nodes on one database).

The registrar (sip/registrar.py) keeps a node's bindings in its endpoint's memory; this module also
writes each one to the store through `RegistrationBook`, this carrier's own small port (the SQL
stores provide it: their `sip_registrations` table, migration 0008), and reads it back when a node
dials an endpoint that did not register with it. A stored binding is keyed by (domain, username,
contact): a lookup names the domain and the username, so one endpoint's binding is never used for
another, and an expired one is never returned.

What another node can use: a binding with a Path (RFC 3327, the phone registered through the SIP
front, Kamailio: the INVITE goes to the front with the Path as Route set), or a UDP binding (the
phone's address). A binding over TCP/TLS without Path lives on the registering node's connection:
other nodes skip it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridgeline.app.records import JSON
from bridgeline.sip.events import Registered, RegistrationLimits, Unregistered
from bridgeline.sip.headers import parse_name_address
from bridgeline.sip.registrar import Binding
from bridgeline.sip.syntax import SipParseError
from bridgeline.sip.transaction import Transport
from bridgeline.sip.uri import SipURI, parse_sip_uri

log = structlog.get_logger(__name__)

WRITE_QUEUE_MAX = 10_000  # registrations waiting to be written; beyond, the oldest news is dropped


class RegistrationBook(Protocol):
    """Where bindings are shared: the carrier's own port, satisfied by the SQL stores."""

    async def put_sip_binding(
        self, domain: str, username: str, contact: str, binding: JSON, expires_at: float, now: float
    ) -> None:
        """Insert or refresh one binding (`now`: its time; bindings expired by then are dropped)."""
        ...

    async def delete_sip_binding(self, domain: str, username: str, contact: str) -> None: ...

    async def sip_bindings(self, domain: str, username: str, now: float) -> list[JSON]:
        """The live bindings of exactly this (domain, username), most recently refreshed first."""
        ...


class RegistrationSettings(BaseModel):
    """`registrations:` in the SIP YAML: who may add a Path, and whether bindings are shared."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The SIP front (Kamailio) as host or host:port: a REGISTER from it keeps its Path (RFC 3327)
    # and calls to that phone go through it. From anyone else Path is ignored.
    path_proxies: list[str] = Field(default_factory=list)
    max_path: int = Field(default=4, ge=1, le=16)  # Path entries a REGISTER may carry; more: 400
    shared: bool = True  # write bindings to the store and use other nodes' (cluster mode)

    @field_validator("path_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for entry in value:
            _host_port(entry)
        return value

    def limits(self) -> RegistrationLimits:
        return RegistrationLimits(
            path_proxies=frozenset(_host_port(entry) for entry in self.path_proxies),
            max_path=self.max_path,
        )


def _host_port(entry: str) -> tuple[str, int | None]:
    """`host` or `host:port` (`[v6]:port`), as the registrar compares a REGISTER's source."""
    text = entry.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host or (port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536)):
        raise ValueError(f"path proxy {entry!r} is not host or host:port")
    return host, int(port_text) if port_text else None


def binding_to_json(event: Registered) -> JSON:
    return {
        "contact": str(event.contact),
        "target": str(event.target),
        "path": [str(hop) for hop in event.path],
        "transport": event.transport.value,
    }


def binding_from_json(raw: JSON) -> Binding | None:
    """A stored binding this node can call, or None (unreadable, or tied to another node's
    connection). Parsed like anything from outside: the row may come from another version."""
    try:
        contact = parse_sip_uri(str(raw["contact"]))
        target = parse_sip_uri(str(raw["target"]))
        path = tuple(parse_name_address(str(hop)) for hop in raw.get("path") or ())
        transport = Transport(str(raw.get("transport", "UDP")))
    except (KeyError, ValueError, SipParseError, TypeError):
        return None
    if any(not isinstance(hop.uri, SipURI) for hop in path):
        return None
    if not path and transport.reliable:
        return None  # reachable only over the registering node's own TCP/TLS connection
    return Binding(contact, target, "", 0, float("inf"), 0.0, None, path)


class SharedRegistrations:
    """Writes this node's registrations to the book in order (one writer task), and finds a stored
    binding for an endpoint this node does not have."""

    def __init__(self, book: RegistrationBook, domain: str, clock: Callable[[], float] = time.time) -> None:
        self._book = book
        self._domain = domain
        self._clock = clock
        self._queue: asyncio.Queue[Registered | Unregistered] = asyncio.Queue(WRITE_QUEUE_MAX)
        self._writer: asyncio.Task[None] | None = None
        self.stored = self.lookups = self.found = self.write_failures = 0

    def record(self, event: Registered | Unregistered) -> None:
        """A binding added, refreshed or removed here: written to the book soon, in order. One
        that merely expired here is left to its row's own expiry: the phone may have refreshed it
        through another node since (after a failover), and that row must stay."""
        if isinstance(event, Unregistered) and event.reason == "expired":
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_all())
        if self._queue.full():
            self._queue.get_nowait()  # a registration storm: the phones refresh again anyway
        self._queue.put_nowait(event)

    async def _write_all(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                if isinstance(event, Registered):
                    now = self._clock()
                    key = (self._domain, event.username, str(event.contact))
                    await self._book.put_sip_binding(*key, binding_to_json(event), now + event.expires, now)
                    self.stored += 1
                else:
                    await self._book.delete_sip_binding(self._domain, event.username, str(event.contact))
            except Exception as exc:  # the database is away: the binding stays local until refreshed
                self.write_failures += 1
                log.warning("sip_registration_not_shared", username=event.username, error=str(exc))
            finally:
                self._queue.task_done()

    async def lookup(self, username: str) -> Binding | None:
        """The freshest live binding another node stored for this endpoint that we can call."""
        self.lookups += 1
        try:
            rows = await self._book.sip_bindings(self._domain, username, self._clock())
        except Exception as exc:
            log.warning("sip_registration_lookup_failed", username=username, error=str(exc))
            return None
        for raw in rows:
            binding = binding_from_json(raw)
            if binding is not None:
                self.found += 1
                return binding
        return None

    async def close(self) -> None:
        """Write what is queued (bounded by the caller's patience), then stop."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), 2.0)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
