"""The music/message setting grammar: tones, media-directory files, http(s) URLs, nothing else; checked
when a PHLO is validated and again once a run payload has filled its templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridgeline.phlo.definition import MpcNode, PhloDefinition, resolve_settings
from bridgeline.phlo.media_spec import (
    FileSpec,
    MediaSpecError,
    ToneSpec,
    UrlSpec,
    check_media_setting,
    parse_media_spec,
)
from bridgeline.phlo.template import SettingError


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("tone:440", ToneSpec((440.0,))),
        (" TONE:350+440 ", ToneSpec((350.0, 440.0))),
        ("hold.wav", FileSpec("hold.wav")),
        ("music/jazz_1.mp3", FileSpec("music/jazz_1.mp3")),
        ("https://cdn.example.com/hold.mp3?v=2", UrlSpec("https://cdn.example.com/hold.mp3?v=2")),
        ("HTTP://127.0.0.1:8000/a.wav", UrlSpec("HTTP://127.0.0.1:8000/a.wav")),
    ],
)
def test_accepted_forms(text: str, spec: object) -> None:
    assert parse_media_spec(text) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "tone:",
        "tone:abc",
        "tone:440+",
        "tone:10",
        "tone:4000",
        "tone:nan",
        "tone:inf",
        "tone:1+2+3+4+5",
        "/etc/passwd",
        "/dev/zero",
        "~/hold.wav",
        "~root/x",
        "../x",
        "music/../../etc/passwd",
        "a/./b.wav",
        "a//b.wav",
        "music/",
        ".hidden.wav",
        "a\\..\\b.wav",
        "hold\x00.wav",
        "hold\n.wav",
        "héllo.wav",
        "file:///etc/passwd",
        "FILE:/etc/passwd",
        "data:audio/wav;base64,AAAA",
        "ftp://example.com/a.wav",
        "gopher://example.com/",
        "https://",
        "https:///path-only",
        "https://exa mple.com/a.wav",
        "https://example.com/\x00",
        "x" * 3000,
    ],
)
def test_refused_forms(text: str) -> None:
    with pytest.raises(MediaSpecError):
        parse_media_spec(text)


@pytest.mark.parametrize("value", ["{{music}}", "hold/{{name}}.wav", "tone:{{f}}", "https://{{host}}/a.mp3"])
def test_templates_stand_in_for_any_accepted_value(value: str) -> None:
    assert check_media_setting(value) == value


@pytest.mark.parametrize("value", ["/etc/{{name}}", "../{{x}}", "file:///{{path}}", "{{a}}/../b"])
def test_templates_do_not_hide_a_refused_form(value: str) -> None:
    with pytest.raises(MediaSpecError):
        check_media_setting(value)


@pytest.mark.parametrize(
    "setting", ["agent_hold_music", "customer_hold_music", "wait_music", "voicemail_message"]
)
def test_a_phlo_naming_a_server_path_is_refused_naming_the_field(setting: str) -> None:
    with pytest.raises(ValidationError) as raised:
        PhloDefinition.model_validate({"name": "x", "nodes": [{setting: "/etc/passwd"}]})
    error = raised.value.errors()[0]
    assert error["loc"] == ("nodes", 0, setting) and "absolute path" in error["msg"]


@pytest.mark.parametrize("bad", ["/etc/passwd", "../secret.wav", "file:///etc/passwd", "/dev/zero"])
def test_a_payload_that_fills_in_a_path_is_refused(bad: str) -> None:
    node = MpcNode(customer_hold_music="{{music}}", voicemail_message="vm/{{vm}}")
    assert resolve_settings(node, {"music": "tone:500", "vm": "a.wav"}).voicemail_message == "vm/a.wav"
    with pytest.raises(SettingError, match="customer_hold_music"):
        resolve_settings(node, {"music": bad, "vm": "a.wav"})
    with pytest.raises(SettingError, match="voicemail_message"):
        resolve_settings(node, {"music": "tone:500", "vm": "../../etc/passwd"})
