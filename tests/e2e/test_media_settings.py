"""Music and message settings are refused (400, Plivo's error shape, naming the field) when they name
anything but a tone, a file relative to the media directory or an http(s) URL: when the PHLO is
created, and when a run's payload fills a template with such a value (the run is refused, no
conference starts, nothing is read)."""

from __future__ import annotations

import pytest
from e2ekit import Api, assert_plivo_error, number

SETTINGS = ("agent_hold_music", "customer_hold_music", "wait_music", "voicemail_message")
SERVER_PATHS = (
    "/dev/zero",
    "/etc/passwd",
    "../x.wav",
    "media/../../etc/passwd",
    "file:///etc/passwd",
    "~/x.wav",
)


def node(**settings: str) -> dict[str, object]:
    return {
        "name": "media",
        "nodes": [{"name": "Multi-Party Call_1", "type": "multi_party_call", **settings}],
        "run": {"dial": [{"to": "{{agent}}", "role": "agent"}, {"to": "{{customer}}", "role": "customer"}]},
    }


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("value", SERVER_PATHS)
def test_a_phlo_naming_a_server_path_is_refused(api: Api, setting: str, value: str) -> None:
    body = assert_plivo_error(api.http.post("/v1/phlo", json=node(**{setting: value})), 400)
    assert f"nodes.0.{setting}" in body["error"]


def test_tones_files_urls_and_templates_are_accepted(api: Api) -> None:
    response = api.http.post(
        "/v1/phlo",
        json=node(
            agent_hold_music="tone:440+480",
            customer_hold_music="hold/jazz.mp3",
            wait_music="https://example.com/wait.mp3",
            voicemail_message="{{message}}",
        ),
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("value", SERVER_PATHS)
def test_a_run_whose_payload_fills_in_a_server_path_is_refused(api: Api, value: str) -> None:
    phlo = api.create_phlo(customer_hold_music="{{hold}}")
    body = assert_plivo_error(phlo.post_run({"agent": number(), "customer": number(), "hold": value}), 400)
    assert "customer_hold_music" in body["error"]
    assert phlo.instances() == []  # no conference started
    assert phlo.post_run({"agent": number(), "customer": number(), "hold": "tone:500"}).status_code == 201
