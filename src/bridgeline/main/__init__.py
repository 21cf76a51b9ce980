"""The entry point's server side: the one place that chooses adapters and wires them to the ports,
then serves the result. `cli/` calls `serve` here; tests build servers with `build`.

  wiring.py    `build()`: the store, carrier, services, dispatcher and API made and connected;
               `Bridgeline`, the running server, and its ordered `stop()`
  carriers.py  which carrier, and its bindings to the app (inbound routes, REFER, fencing)
  cluster.py   what several nodes on one database add: the cross-node feed, forwarding
  serving.py   uvicorn, the event loop and the process tuning around a built server
"""

from bridgeline.main.carriers import (
    egress_policy,
    fence_carrier,
    make_carrier,
    route_inbound_calls,
    route_refer_transfers,
)
from bridgeline.main.cluster import ClusterFeed, cluster_feed, cluster_settings, make_forwarder
from bridgeline.main.serving import (
    GC_THRESHOLDS,
    WithLifespan,
    http_limits,
    raise_file_limit,
    run_event_loop,
    serve,
    settle_heap,
)
from bridgeline.main.wiring import Bridgeline, build, make_pruner, recording_retention, retry_settings

__all__ = [
    "GC_THRESHOLDS",
    "Bridgeline",
    "ClusterFeed",
    "WithLifespan",
    "build",
    "cluster_feed",
    "cluster_settings",
    "egress_policy",
    "fence_carrier",
    "http_limits",
    "make_carrier",
    "make_forwarder",
    "make_pruner",
    "raise_file_limit",
    "recording_retention",
    "retry_settings",
    "route_inbound_calls",
    "route_refer_transfers",
    "run_event_loop",
    "serve",
    "settle_heap",
]
