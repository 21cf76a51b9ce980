"""The cluster settings (docs/cluster.md): defaults, BRIDGELINE_* variables, `serve` flags, and the values
refused at start."""

from __future__ import annotations

import pytest

from bridgeline.cli.commands import _parser
from bridgeline.config import CLUSTER_SETTINGS, Settings
from bridgeline.main import cluster_settings, make_carrier, make_forwarder


def test_defaults_make_one_node_that_is_reached_where_it_listens() -> None:
    settings = Settings.from_env(host="10.0.0.5", port=8081)
    assert (settings.node_id, settings.node_lease_s, settings.node_heartbeat_s) == ("local", 3.0, 1.0)
    assert settings.drain_timeout_s == 10.0
    assert settings.node_url == "http://10.0.0.5:8081"


def test_environment_variables_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGELINE_NODE_ID", "node-b")
    monkeypatch.setenv("BRIDGELINE_INTERNAL_URL", "http://10.1.0.2:8080")
    monkeypatch.setenv("BRIDGELINE_NODE_LEASE_S", "5")
    monkeypatch.setenv("BRIDGELINE_NODE_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("BRIDGELINE_DRAIN_TIMEOUT_S", "20")
    settings = Settings.from_env()
    assert (settings.node_id, settings.node_url) == ("node-b", "http://10.1.0.2:8080")
    assert (settings.node_lease_s, settings.node_heartbeat_s, settings.drain_timeout_s) == (5.0, 0.5, 20.0)
    args = _parser().parse_args(
        ["serve", "--node-id", "node-c", "--node-lease-s", "4", "--internal-url", "http://x:1"]
    )
    flagged = Settings.from_env(**{name: getattr(args, name) for name in CLUSTER_SETTINGS})
    assert (flagged.node_id, flagged.node_lease_s, flagged.node_url) == (
        "node-c",
        4.0,
        "http://x:1",
    )  # flags win
    assert flagged.node_heartbeat_s == 0.5  # the environment still fills what no flag set


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("node_id", "", "node_id"),
        ("node_id", "a b", "node_id"),
        ("node_id", "x" * 65, "node_id"),
        ("node_heartbeat_s", 3.0, "shorter than node_lease_s"),
        ("node_heartbeat_s", 0.0, "positive"),
        ("drain_timeout_s", -1.0, "drain_timeout_s"),
        ("forward_timeout_s", 0.0, "forward_timeout_s"),
        ("forward_retry_s", -1.0, "forward_retry_s"),
    ],
)
def test_bad_values_are_refused_at_start(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_the_node_is_registered_with_these_settings(tmp_path: object) -> None:
    settings = Settings(node_id="n1", internal_url="http://n1:9000", node_lease_s=6.0, node_heartbeat_s=2.0)
    carrier = make_carrier(settings, phone_book=None)  # type: ignore[arg-type]  # the sim carrier keeps none yet
    cluster = cluster_settings(settings, carrier)
    assert (cluster.node_id, cluster.internal_url, cluster.sip_address) == ("n1", "http://n1:9000", None)
    assert (cluster.lease_s, cluster.heartbeat_s) == (6.0, 2.0)


def test_the_forwarder_is_built_with_these_settings() -> None:
    settings = Settings(node_id="n1", node_heartbeat_s=0.5, forward_timeout_s=4.0, forward_retry_s=7.0)
    forwarder = make_forwarder(settings, directory=None, conferences=None)  # type: ignore[arg-type]
    assert (forwarder.node_id, forwarder.retry_for_s, forwarder.nodes_ttl_s) == ("n1", 7.0, 0.5)
    assert forwarder.client.timeout.read == 4.0
    args = _parser().parse_args(["serve", "--forward-retry-s", "3"])
    assert (
        Settings.from_env(**{name: getattr(args, name) for name in CLUSTER_SETTINGS}).forward_retry_s == 3.0
    )
