"""A callback a node was posting when it died (issue #12): two `bridgeline serve` nodes on one
PostgreSQL database. Node b posts a conference's first callback to a receiver that holds the POST;
b is killed mid-POST. The delivery is leased by b for far longer than b's node lease (a 30 s callback
timeout makes that lease 303 s): node a makes it due again once b's node lease has ended and posts
it, and the conference's later callbacks follow in order, within seconds instead of minutes.
"""

from __future__ import annotations

import threading

import pytest
from clusterkit import TAKEOVER_BOUND, Cluster, cluster, database_url, metrics
from e2ekit import Api, CallbackReceiver, number, wait_until
from test_cluster_feed import await_callbacks

pytestmark = pytest.mark.postgres
__all__ = ["cluster", "database_url"]  # fixtures, used by name

SETTINGS = {"BRIDGELINE_WEBHOOK_TIMEOUT": "30"}  # a delivery lease of 30 x (2 + 32 / 4) + 3 = 303 s


def test_a_callback_a_killed_node_was_posting_goes_out_once_its_node_lease_ends(
    cluster: Cluster, database_url: str
) -> None:
    holding, release = threading.Event(), threading.Event()

    def respond(index: int) -> int:
        if index == 0:  # the first POST, b's: held until the test ends (b dies meanwhile)
            holding.set()
            release.wait(60)
        return 200

    with CallbackReceiver(respond=respond) as receiver:
        try:
            b = cluster.start("b", SETTINGS)
            phlo = Api(b).create_phlo(callback_url=receiver.url())
            phlo.connect(number(), number())
            mpc_uuid = phlo.conference()["mpc_uuid"]
            assert holding.wait(15), "no callback reached the receiver"
            b.kill()
            a = cluster.start("a", SETTINGS)
            assert cluster.wait_owned_by_another(mpc_uuid, "b") == "a"
            # Every stored event, in order (the held one posted again by a), long before b's lease
            # on the delivery (303 s) would have ended.
            await_callbacks(receiver, database_url, mpc_uuid, timeout=TAKEOVER_BOUND)
            assert metrics(a)["bridgeline_node_delivery_leases_released_total"] >= 1
            left = "SELECT count(*) FROM deliveries WHERE conference_id = %s AND status <> 'delivered'"
            wait_until(lambda: cluster.query(left, mpc_uuid) == [(0,)], what="every delivery delivered")
        finally:
            release.set()
