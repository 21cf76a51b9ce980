"""What every client command shares: exit codes, the error that carries one, and the HTTP client.

Client commands find the server from `--url` or BRIDGELINE_URL (default http://127.0.0.1:8080)
and the credentials from BRIDGELINE_AUTH_ID / BRIDGELINE_AUTH_TOKEN, else from the data
directory's credentials file.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import httpx

from bridgeline.config import DEFAULT_HOST, DEFAULT_PORT

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("BRIDGELINE_URL", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="where to find credentials.json")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")


def client(args: argparse.Namespace) -> httpx.Client:
    auth_id = os.environ.get("BRIDGELINE_AUTH_ID")
    token = os.environ.get("BRIDGELINE_AUTH_TOKEN")
    if not (auth_id and token):
        path = args.data_dir / "credentials.json"
        if not path.exists():
            raise CliError(
                "no credentials: set BRIDGELINE_AUTH_ID and BRIDGELINE_AUTH_TOKEN, or use --data-dir"
            )
        raw = json.loads(path.read_text())
        auth_id, token = raw["auth_id"], raw["auth_token"]
    return httpx.Client(base_url=args.url.rstrip("/"), auth=(auth_id, token), timeout=10)


def request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> dict[str, Any]:
    try:
        with client(args) as http:
            response = http.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}") from exc
    try:
        data: dict[str, Any] = response.json()
    except ValueError:
        data = {"error": response.text}
    if response.status_code >= 400:
        raise CliError(f"{response.status_code}: {data.get('error', data)}", EXIT_REFUSED)
    return data
