"""deploy/kamailio/kamailio.cfg, rendered as tools/cluster.py renders it, passes Kamailio's own
check (`kamailio -c -f FILE`: modules load, parameters exist, routes parse)."""

from __future__ import annotations

from pathlib import Path

from kamkit import check_config, cluster


def test_the_shipped_config_passes_kamailio_s_check(tmp_path: Path) -> None:
    config = tmp_path / "kamailio.cfg"
    config.write_text(cluster.render_kamailio("127.0.0.1:25060", tmp_path, ping_interval_s=5))
    (tmp_path / "dispatcher.list").write_text(
        cluster.render_dispatcher([("node-1", "127.0.0.1:25070"), ("node-2", "127.0.0.1:25072")])
    )
    checked = check_config(config)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "config file ok" in checked.stdout + checked.stderr


def test_a_config_kamailio_refuses_fails_the_check(tmp_path: Path) -> None:
    """The check is real: the same config with a route that calls an unknown function fails."""
    text = cluster.render_kamailio("127.0.0.1:25060", tmp_path).replace(
        "record_route();", "record_rout();", 1
    )
    (tmp_path / "dispatcher.list").write_text(cluster.render_dispatcher([("node-1", "127.0.0.1:25070")]))
    config = tmp_path / "kamailio.cfg"
    config.write_text(text)
    assert check_config(config).returncode != 0
