"""What the server's log shows: conference events only at debug level (BRIDGELINE_LOG_LEVEL)."""

from __future__ import annotations

from collections.abc import Callable

from e2ekit import Api, ServerProcess, number


def held_once(server: ServerProcess) -> None:
    phlo = Api(server).create_phlo()
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    assert phlo.member_action(customer, "hold").status_code == 201


def test_events_are_logged_at_debug_level(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(env={"BRIDGELINE_LOG_LEVEL": "debug", "BRIDGELINE_LOG_FORMAT": "json"})
    held_once(server)
    server.stop()
    assert '"type": "member_held"' in server.stderr()
    assert '"event": "bridgeline_started"' in server.stderr()


def test_events_are_not_logged_at_the_default_level(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(env={"BRIDGELINE_LOG_FORMAT": "json"})
    held_once(server)
    server.stop()
    assert '"type": "member_held"' not in server.stderr()
    assert '"event": "bridgeline_started"' in server.stderr()
