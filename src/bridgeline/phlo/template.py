"""`{{ key }}` templates filled from a PHLO run payload.

Plivo's canvas uses Liquid; we accept the subset a run needs: a bare key (`{{agent}}`) or a
dotted path (`{{Start.http.params.agent}}`, `{{customer.number}}`). A path that starts with
`Start.` is looked up by its last segment, because Plivo's exact variable path for API-request
payload keys is undocumented and users copy it from the canvas in several spellings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}")


class TemplateError(ValueError):
    """The payload lacks a key a template needs."""


class SettingError(ValueError):
    """A node setting, once its templates are filled from the run payload, is not acceptable."""


def placeholders(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)


def fill(text: str, payload: Mapping[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        return _lookup(match.group(1), payload)

    return _PLACEHOLDER.sub(replace, text)


def _lookup(path: str, payload: Mapping[str, Any]) -> str:
    value = _walk(path.split("."), payload)
    if value is None and path.startswith("Start."):
        value = _walk([path.rsplit(".", 1)[-1]], payload)
    if value is None:
        raise TemplateError(f"the run payload has no value for '{path}'")
    if isinstance(value, Mapping | list):
        raise TemplateError(f"the run payload value for '{path}' must be a string or a number")
    return str(value)


def _walk(parts: list[str], payload: Mapping[str, Any]) -> Any:
    value: Any = payload
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
