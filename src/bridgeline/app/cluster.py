"""This node's place in the cluster: its lease, taking over orphaned conferences, and drain.

Every `heartbeat_s` the node renews its lease in the store, then scans for live conferences it may
claim (their owner's lease expired, the owner restarted, they were handed to it, or they predate
clusters) and adopts its share (app/lease.py `claim_share`). A renewal the store refuses means the
lease was lost (paused past it, partitioned): the node forgets every conference without hanging up,
registers again with a new epoch, and claims back those nobody took meanwhile. While the lease does not
hold locally (`fenced`), the SIP carrier sends neither RTP nor SIP. On SQLite (one node) the same code
runs: the node is always the only claimant of its conferences.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from bridgeline.app.lease import Load, LocalLease, claim_share, least_loaded
from bridgeline.app.ports import ClusterDirectory, NodeLeases
from bridgeline.app.records import NodeLoad, NodeRecord, NodeState
from bridgeline.app.service import ConferenceService

log = structlog.get_logger(__name__)

# Startup claims back what a previous life left, scan after scan, up to this many (then the loop goes on).
STARTUP_SCANS = 1000
START_POLL_S = 0.1  # how often a starting node looks whether its id's earlier lease ran out


class NodeIdInUse(Exception):
    """Another live process has this node id."""


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    node_id: str
    internal_url: str
    sip_address: str | None
    lease_s: float
    heartbeat_s: float
    claim_batch: int = 50  # conferences claimed per scan at most


class ClusterNode:
    def __init__(
        self,
        leases: NodeLeases,
        directory: ClusterDirectory,
        conferences: ConferenceService,
        settings: ClusterSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._leases = leases
        self._directory = directory
        self._conferences = conferences
        self.settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self.lease = LocalLease(settings.lease_s, margin_s=settings.lease_s / 10)
        self.epoch: int | None = None
        self.draining = False
        self.takeovers = 0
        self.leases_lost = 0
        self.delivery_leases_released = 0
        self._task: asyncio.Task[None] | None = None
        self._beat_lock = asyncio.Lock()
        # Work that follows each heartbeat on the loop (app/segments.py's sweep); a failure is logged.
        self.after_beat: list[Callable[[], Awaitable[object]]] = []

    # ----------------------------------------------------------------- what others ask
    @property
    def node_id(self) -> str:
        return self.settings.node_id

    def owner(self) -> tuple[str, int] | None:
        """Who this node's commits are fenced as (the conference service stamps its records with it)."""
        return None if self.epoch is None else (self.node_id, self.epoch)

    def fenced(self) -> bool:
        """True while the lease does not hold locally: send nothing (any thread may ask)."""
        return not self.lease.held(self._monotonic())

    @property
    def ready(self) -> bool:
        return not self.draining and not self.fenced()

    def stats(self) -> dict[str, int | float]:
        return {
            "lease_held": 0 if self.fenced() else 1,
            "epoch": self.epoch or 0,
            "conferences_owned": self._conferences.live_count,
            "takeovers": self.takeovers,
            "leases_lost": self.leases_lost,
            "delivery_leases_released": self.delivery_leases_released,
            "draining": 1 if self.draining else 0,
        }

    # ----------------------------------------------------------------- life
    async def start(self) -> int:
        """Register, take back what is this node's (or nobody's), then keep the lease. How many adopted."""
        await self._wait_for_earlier_life()
        await self._register()
        adopted = 0
        for _ in range(STARTUP_SCANS):
            claimed = await self._scan()
            adopted += claimed
            if claimed == 0:
                break
        self._task = asyncio.create_task(self._run())
        return adopted

    async def stop_heartbeats(self) -> None:
        """No more renewals or claims (the process is stopping; the lease runs out unless `leave`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def leave(self) -> None:
        """End the lease now, so what this node still owns is claimable at once: the last step of a stop,
        once nothing here will touch those calls again."""
        await self.stop_heartbeats()
        if self.epoch is not None:
            try:
                await self._leases.leave_cluster(self.node_id, self.epoch)
            except Exception as error:  # the lease then simply runs out
                log.warning("node_leave_failed", node_id=self.node_id, error=repr(error))
        self.lease.lost()

    async def drain(self, timeout_s: float) -> int:
        """Stop taking work, hand each conference to the least-loaded live node (forgotten here without
        a word to its legs), within `timeout_s`. How many were handed off."""
        self.draining = True
        deadline = self._monotonic() + timeout_s
        await self.beat()  # tell the others now: they stop placing work here
        handed = 0
        given: dict[str, int] = {}
        others = False  # other live nodes: balancers in front must get to see /ready answer 503
        for conference_id in self._conferences.conference_ids:
            if self._monotonic() > deadline or self.epoch is None:
                break
            nodes = [
                Load(n.node_id, n.live_conferences + given.get(n.node_id, 0), n.live_legs)
                for n in await self._directory.live_nodes()
                if n.node_id != self.node_id and n.state is NodeState.UP
            ]
            target = least_loaded(nodes)
            if target is None:  # alone (one node, SQLite): its conferences wait for its restart
                log.info("drain_no_other_node", node_id=self.node_id, left=self._conferences.live_count)
                break
            others = True
            epoch = self.epoch

            async def give(
                conference_id: str = conference_id, to: str = target.node_id, epoch: int = epoch
            ) -> bool:
                return await self._leases.hand_off_conference(
                    conference_id, self.node_id, epoch, to, self._clock()
                )

            if await self._conferences.hand_off(conference_id, give):
                handed += 1
                given[target.node_id] = given.get(target.node_id, 0) + 1
                log.info("conference_handed_off", conference_id=conference_id, to=target.node_id)
        log.info("node_drained", node_id=self.node_id, handed_off=handed, kept=self._conferences.live_count)
        if others or any(n.node_id != self.node_id for n in await self._directory.live_nodes()):
            # Keep serving (503 on /ready) for a heartbeat, so whoever polls /ready stops sending work
            # here before the port closes; a lone node has nobody to tell and exits at once.
            await asyncio.sleep(max(0.0, min(self.settings.heartbeat_s, deadline - self._monotonic())))
        return handed

    # ----------------------------------------------------------------- the loop
    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database away: the local lease runs out and fences the node
                log.warning("node_heartbeat_failed", node_id=self.node_id, error=repr(error))
                continue
            for work in self.after_beat:
                try:
                    await work()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("after_beat_failed", node_id=self.node_id, error=repr(error))

    async def beat(self) -> None:
        """One heartbeat: renew (or, lost, start over with a new epoch), then claim a share of orphans."""
        async with self._beat_lock:
            if self.epoch is None:
                await self._register()
            else:
                sent = self._monotonic()
                load = NodeLoad(
                    NodeState.DRAINING if self.draining else NodeState.UP,
                    self._conferences.live_count,
                    self._conferences.live_leg_count,
                )
                epoch = self.epoch
                renewed = await self._leases.renew_node(
                    self.node_id, epoch, self.settings.lease_s, load, self._clock()
                )
                if renewed:
                    self.lease.renewed(sent)
                else:
                    await self._lost(epoch)
            if not self.draining:
                await self._scan()
            if not self.fenced():  # a dead node's callbacks in flight: due now, for whoever claims them
                self.delivery_leases_released += await self._leases.release_dead_leases(self._clock())

    async def _lost(self, epoch: int) -> None:
        log.warning("lease_lost", node_id=self.node_id, epoch=epoch, conferences=self._conferences.live_count)
        self.leases_lost += 1
        self.lease.lost()
        # What was taken over meanwhile is someone else's; what was not is claimed back below from the
        # store, whose snapshot is the last committed state either way.
        for conference_id in self._conferences.conference_ids:
            await self._conferences.release(conference_id)
        await self._register()

    async def _wait_for_earlier_life(self) -> None:
        """Start only once no live process holds this node id: an earlier life killed a moment ago still
        holds its lease (at most node_lease_s more, unless it left cleanly); a lease renewed meanwhile is
        another process with the same id, which would fence this one out and back again every second."""
        held_since: float | None = None
        for _ in range(int((self.settings.lease_s + self.settings.heartbeat_s) / START_POLL_S) + 1):
            mine = [node for node in await self._directory.live_nodes() if node.node_id == self.node_id]
            if not mine:
                return
            if held_since is None:
                held_since = mine[0].heartbeat_at
                log.info("node_id_held_waiting", node_id=self.node_id, epoch=mine[0].epoch)
            elif mine[0].heartbeat_at != held_since:
                break  # renewed: alive
            await asyncio.sleep(START_POLL_S)
        raise NodeIdInUse(
            f"node id {self.node_id!r} is in use by a live node ({mine[0].internal_url}):"
            " give each node its own BRIDGELINE_NODE_ID"
        )

    async def _register(self) -> NodeRecord:
        s = self.settings
        sent = self._monotonic()
        node = await self._leases.register_node(
            s.node_id, s.internal_url, s.sip_address, s.lease_s, self._clock()
        )
        self.epoch = node.epoch
        self.lease.lost()
        self.lease.renewed(sent)
        log.info("node_registered", node_id=s.node_id, epoch=node.epoch, lease_s=s.lease_s)
        return node

    async def _scan(self) -> int:
        """Claim this node's share of the orphaned conferences and adopt them; how many."""
        if self.epoch is None or self.fenced():
            return 0
        epoch, now = self.epoch, self._clock()
        orphans = await self._leases.count_orphans(self.node_id, epoch, now)
        if orphans == 0:
            return 0
        loads = [
            Load(n.node_id, n.live_conferences, n.live_legs)
            for n in await self._directory.live_nodes()
            if n.state is NodeState.UP and n.node_id != self.node_id
        ]
        loads.append(Load(self.node_id, self._conferences.live_count, self._conferences.live_leg_count))
        share = claim_share(self.node_id, loads, orphans, self.settings.claim_batch)
        records = await self._leases.claim_conferences(self.node_id, epoch, share, now)
        for record in records:
            self._conferences.adopt(record)
            self.takeovers += 1
            log.info(
                "conference_taken_over", conference_id=record.conference_id, node_id=self.node_id, epoch=epoch
            )
        return len(records)
