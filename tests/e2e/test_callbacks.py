"""Event callbacks: form-encoded POSTs, signed as Plivo signs them (V3), and retried on failure."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any

import plivo.utils
import pytest
from e2ekit import AUTH_TOKEN, Api, Callback, CallbackReceiver, ServerProcess, number, wait_until

COMMON_FIELDS = {"event", "sequence", "timestamp", "mpc_uuid", "phlo_id", "node_id", "phlo_run_id"}


def assert_signed(callback: Callback, url: str) -> None:
    headers = {k.lower(): v for k, v in callback.headers.items()}
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    nonce = headers["x-plivo-signature-v3-nonce"]
    signature = headers["x-plivo-signature-v3"]
    assert nonce and signature
    assert plivo.utils.validate_v3_signature("POST", url, nonce, AUTH_TOKEN, signature, dict(callback.params))
    # the main-account variant carries the same signature for a main account
    assert plivo.utils.validate_v3_signature(
        "POST", url, nonce, AUTH_TOKEN, headers["x-plivo-signature-ma-v3"], dict(callback.params)
    )
    # and a tampered body or another token does not validate
    tampered = {**callback.params, "event": "tampered"}
    assert not plivo.utils.validate_v3_signature("POST", url, nonce, AUTH_TOKEN, signature, tampered)
    assert not plivo.utils.validate_v3_signature(
        "POST", url, nonce, "other-token", signature, callback.params
    )


def test_every_event_is_posted_signed_and_in_sequence(api: Api, receiver: CallbackReceiver, sdk: Any) -> None:
    url = receiver.url("/plivo/events?tenant=acme&b=2")
    phlo = api.create_phlo(callback_url=url, customer_hold_music="tone:523")
    agent, customer = number(), number()
    run = phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    assert mpc.member(customer).hold().error == ""
    assert mpc.member(customer).unhold().error == ""
    assert mpc.member(agent).hangup().error == ""
    assert mpc.member(customer).hangup().error == ""
    phlo.wait_ended(mpc_uuid)

    expected = [
        "conference_started",
        "member_dialing",  # agent
        "member_ringing",
        "member_connected",
        "member_dialing",  # customer
        "member_ringing",
        "member_connected",
        "member_held",
        "member_unheld",
        "member_left",  # agent
        "member_left",  # customer
        "conference_ended",
    ]
    wait_until(lambda: len(receiver.delivered(mpc_uuid)) >= len(expected), what="every callback")
    callbacks = sorted(receiver.delivered(mpc_uuid), key=lambda c: int(c.params["sequence"]))
    assert [int(c.params["sequence"]) for c in callbacks] == list(range(1, len(expected) + 1))
    assert [c.params["event"] for c in callbacks] == expected
    for callback in callbacks:
        assert callback.path == "/plivo/events"
        assert callback.query == "tenant=acme&b=2"
        assert set(callback.params) >= COMMON_FIELDS, callback.params
        assert callback.params["phlo_id"] == phlo.phlo_id
        assert callback.params["node_id"] == phlo.node_id
        assert callback.params["phlo_run_id"] == run["phlo_run_id"]
        assert_signed(callback, url)

    by_event = [
        (c.params["event"], c.params.get("member_address"), c.params.get("status")) for c in callbacks
    ]
    assert by_event[1:4] == [
        ("member_dialing", agent, "dialing"),
        ("member_ringing", agent, "dialing"),
        ("member_connected", agent, "connected"),
    ]
    assert by_event[7:9] == [("member_held", customer, "on_hold"), ("member_unheld", customer, "connected")]
    left = [c.params for c in callbacks if c.params["event"] == "member_left"]
    assert [(p["member_address"], p["reason"]) for p in left] == [(agent, "hangup"), (customer, "hangup")]
    assert callbacks[-1].params["reason"] == "empty"
    assert all(c.params["role"] in ("agent", "customer") for c in callbacks if "member_address" in c.params)
    # nothing is delivered twice when the receiver accepts it at once
    assert len(receiver.snapshot()) == len(expected)


def test_callbacks_of_a_conference_arrive_in_sequence_order(api: Api, receiver: CallbackReceiver) -> None:
    """A receiver sees one conference's events in the order they happened."""
    phlo = api.create_phlo(callback_url=receiver.url())
    agent, customer = number(), number()
    phlo.connect(agent, customer)
    mpc_uuid = phlo.conference()["mpc_uuid"]
    for action in ("hold", "unhold", "hold", "unhold", "hangup"):
        assert phlo.member_action(customer, action).status_code == 201
    assert phlo.member_action(agent, "hangup").status_code == 201
    phlo.wait_ended(mpc_uuid)
    wait_until(lambda: len(receiver.delivered(mpc_uuid)) >= 14, what="every callback")

    arrived = [(int(c.params["sequence"]), c.params["event"]) for c in receiver.delivered(mpc_uuid)]
    assert arrived == sorted(arrived), f"callbacks arrived out of sequence order: {arrived}"


def test_transfer_events(api: Api, receiver: CallbackReceiver, sdk: Any) -> None:
    url = receiver.url()
    phlo = api.create_phlo(callback_url="{{callback}}")
    agent, customer, target = number(), number(), number()
    run = phlo.run(agent=agent, customer=customer, callback=url)
    phlo.wait_member(agent, status="connected", hears=[customer])
    mpc = sdk.phlo.get(phlo.phlo_id).multi_party_call(phlo.node_id)
    assert mpc.warm_transfer(agent, target, "agent").error == ""
    phlo.wait_member(target, status="connected", hears=[agent])
    assert mpc.member(agent).hangup().error == ""
    phlo.wait_member(target, hears=[customer])
    mpc_uuid = phlo.conference()["mpc_uuid"]

    def transfer_events() -> list[dict[str, str]]:
        return [c.params for c in receiver.delivered(mpc_uuid) if c.params["event"].startswith("transfer_")]

    events = wait_until(lambda: len(transfer_events()) >= 3 and transfer_events(), what="transfer callbacks")
    events.sort(key=lambda e: int(e["sequence"]))
    assert [e["event"] for e in events] == ["transfer_started", "transfer_answered", "transfer_completed"]
    assert events[-1]["outcome"] == "transferred"
    assert {(e["initiator"], e["target"], e["transfer_type"]) for e in events} == {(agent, target, "warm")}
    for callback in receiver.delivered(mpc_uuid):
        assert callback.params["phlo_run_id"] == run["phlo_run_id"]
        assert_signed(callback, url)
    # each event carries the transfer's state after what it reports, as member events carry theirs
    assert [e["transfer_state"] for e in events] == ["dialing", "consulting", "completed"]


def test_a_failed_delivery_is_retried(api: Api) -> None:
    failures = 1

    def respond(index: int) -> int:
        return 500 if index < failures else 200

    with CallbackReceiver(respond) as receiver:
        url = receiver.url()
        phlo = api.create_phlo(callback_url=url, dial=[("{{agent}}", "agent")])
        agent = number()
        phlo.run(agent=agent)
        phlo.wait_member(agent, status="connected")
        mpc_uuid = phlo.member(agent)["mpc_uuid"]

        first = wait_until(lambda: receiver.snapshot()[:1], what="a first attempt")[0]
        assert first.answered == 500
        sequence = first.params["sequence"]
        redelivered = wait_until(
            lambda: [c for c in receiver.delivered(mpc_uuid) if c.params["sequence"] == sequence],
            timeout=6,
            what=f"event {sequence} delivered again",
        )
        assert len(redelivered) == 1
        again = redelivered[0]
        assert again.params == first.params
        nonce = {k.lower(): v for k, v in again.headers.items()}["x-plivo-signature-v3-nonce"]
        assert nonce != {k.lower(): v for k, v in first.headers.items()}["x-plivo-signature-v3-nonce"]
        assert_signed(first, url)
        assert_signed(again, url)
        # every event is delivered, each exactly once with success
        wait_until(lambda: len(receiver.events(mpc_uuid)) >= 4, what="the other callbacks")
        events = receiver.events(mpc_uuid)
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1))


# --- callback_url: only http(s), and the egress policy (issue 9) -------------------------------------


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:25/", "/relative/path", "http://", "http://a b/"]
)
def test_a_callback_url_that_is_not_http_is_refused_at_create(api: Api, url: str) -> None:
    definition = {"name": "bad-callback", "nodes": [{"type": "multi_party_call", "callback_url": url}]}
    response = api.http.post("/v1/phlo", json=definition)
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"api_id", "error"} and "callback_url" in body["error"]


def test_a_templated_callback_url_is_checked_once_filled(api: Api) -> None:
    phlo = api.create_phlo(callback_url="{{callback}}", dial=[("{{agent}}", "agent")])
    response = phlo.post_run({"agent": number(), "callback": "file:///etc/passwd"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"api_id", "error"} and "http or https" in body["error"]


def test_the_hosted_profile_refuses_loopback_receivers(server_factory: Callable[..., ServerProcess]) -> None:
    with CallbackReceiver() as receiver:
        hosted = server_factory(env={"BRIDGELINE_EGRESS_PROFILE": "hosted"})
        phlo = Api(hosted).create_phlo(callback_url=receiver.url(), dial=[("{{agent}}", "agent")])
        agent = number()
        phlo.run(agent=agent)
        phlo.wait_member(agent, status="connected")
        wait_until(lambda: "egress policy (hosted) refuses 127.0.0.1" in hosted.stderr(), what="a refusal")
        assert receiver.snapshot() == []
        hosted.stop()

        allowed = server_factory(
            env={"BRIDGELINE_EGRESS_PROFILE": "hosted", "BRIDGELINE_EGRESS_ALLOW": "127.0.0.0/8"}
        )
        phlo = Api(allowed).create_phlo(callback_url=receiver.url(), dial=[("{{agent}}", "agent")])
        phlo.run(agent=agent)
        phlo.wait_member(agent, status="connected")
        wait_until(lambda: receiver.snapshot(), what="a callback through the allow list")


# --- a slow receiver only slows itself (issue 9, item 14) ----------------------------------------------


class HangingReceivers:
    """Sockets on 127.0.0.1 that accept connections, read what is sent and never answer."""

    def __init__(self, count: int) -> None:
        self.listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
        self.connections: list[socket.socket] = []
        self._threads = [
            threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self.listeners
        ]

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{s.getsockname()[1]}/hang" for s in self.listeners]

    def _accept(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                self.connections.append(connection)

    def __enter__(self) -> HangingReceivers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in [*self.listeners, *self.connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


def test_hanging_receivers_do_not_delay_other_conferences(
    server_factory: Callable[..., ServerProcess],
) -> None:
    with CallbackReceiver() as healthy, HangingReceivers(10) as hanging:
        # An attempt may hang for 30 s: the healthy conference's callbacks must not wait for any of them.
        server = server_factory(env={"BRIDGELINE_WEBHOOK_TIMEOUT": "30"})
        phlo = Api(server).create_phlo(callback_url="{{callback}}", dial=[("{{agent}}", "agent")])
        for url in hanging.urls():
            for _ in range(2):
                phlo.run(agent=number(), callback=url)
        wait_until(lambda: len(hanging.connections) >= 8, what="the hanging receivers reached")

        agent = number()
        phlo.run(agent=agent, callback=healthy.url())
        phlo.wait_member(agent, status="connected")
        mpc_uuid = phlo.member(agent)["mpc_uuid"]
        phlo.http.post(phlo.member_path(agent), json={"action": "hangup"})
        events = wait_until(
            lambda: (
                [e for e in healthy.events(mpc_uuid) if e[1] == "conference_ended"]
                and healthy.events(mpc_uuid)
            ),
            timeout=4,
            what="the healthy conference's callbacks, to its end",
        )
        assert [seq for seq, _ in events] == list(range(1, len(events) + 1))  # all, in order
