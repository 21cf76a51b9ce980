"""The `bridgeline` command: run the server, manage PHLOs and accounts.

Client commands find the server from `--url` or BRIDGELINE_URL (default http://127.0.0.1:8080)
and the credentials from BRIDGELINE_AUTH_ID / BRIDGELINE_AUTH_TOKEN, else from the data
directory's credentials file. Exit codes: 0 success, 1 the server refused (4xx), 2 usage or
connection error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from bridgeline.cli.calls import add_commands
from bridgeline.cli.client import EXIT_OK, EXIT_REFUSED, CliError, client_options, request
from bridgeline.config import (
    CLUSTER_SETTINGS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EDGE_SETTINGS,
    Settings,
    new_auth_id,
    new_auth_token,
)

# asyncio, yaml, logging and the store's records are imported by the commands that use them: the
# client commands (`calls`, `member`, ...) then start in about half the time.
if TYPE_CHECKING:
    from bridgeline.app.ports import AccountStore
    from bridgeline.app.records import Account

T = TypeVar("T")

CACHE_NOTE = "its BRIDGELINE_AUTH_CACHE_SECONDS (default 5 s)"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridgeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--data-dir", type=Path, default=Path("data"))
    serve.add_argument("--carrier", choices=["sim", "sip"], default="sim")
    serve.add_argument("--sip-listen", default=None, help="host:port of the SIP socket (sip carrier)")
    serve.add_argument("--sip-config", type=Path, default=None, help="YAML: endpoints, trunk, inbound, RTP")
    serve.add_argument("--database-url", default=None, help="default: SQLite in the data directory")
    serve.add_argument("--sim-answer-delay-ms", type=int, default=None)
    serve.add_argument(
        "--media-dir", type=Path, default=None, help="music/message files (default <data-dir>/media)"
    )
    serve.add_argument(
        "--log-level", default=None, help="debug, info (default), warning or error; env BRIDGELINE_LOG_LEVEL"
    )
    for name, kind in EDGE_SETTINGS.items():  # HTTP edge and authentication limits (docs/security.md)
        flag = "--" + name.replace("_", "-")
        serve.add_argument(flag, type=kind, default=None, help=f"env BRIDGELINE_{name.upper()}")
    for name, cluster_kind in CLUSTER_SETTINGS.items():  # the cluster (docs/cluster.md)
        flag = "--" + name.replace("_", "-")
        serve.add_argument(flag, type=cluster_kind, default=None, help=f"env BRIDGELINE_{name.upper()}")
    serve.set_defaults(func=_serve)

    phlo = commands.add_parser("phlo", help="manage PHLOs").add_subparsers(required=True, metavar="ACTION")
    create = phlo.add_parser("create", help="create a PHLO from a YAML or JSON file")
    create.add_argument("file", type=Path)
    client_options(create)
    create.set_defaults(func=_phlo_create)
    listing = phlo.add_parser("list", help="list PHLOs")
    client_options(listing)
    listing.set_defaults(func=_phlo_list)

    add_commands(commands, client_options)

    account = commands.add_parser("account", help="manage accounts").add_subparsers(
        required=True, metavar="ACTION"
    )
    add = account.add_parser("add", help="create another account in the store and print its credentials")
    add.add_argument("--sub", action="store_true", help="an SA (sub-account) id instead of MA")
    rotate = account.add_parser(
        "rotate-token", help="give an account a new token (the old one stops working)"
    )
    rotate.add_argument("auth_id")
    remove = account.add_parser("remove", help="remove an account (its token stops working)")
    remove.add_argument("auth_id")
    for command, func in ((add, _account_add), (rotate, _account_rotate_token), (remove, _account_remove)):
        command.add_argument("--data-dir", type=Path, default=Path("data"))
        command.add_argument("--database-url", default=None)
        command.set_defaults(func=func)

    prune = commands.add_parser(
        "prune", help="delete ended conferences (events, deliveries) and finished runs past retention, now"
    )
    prune.add_argument("--data-dir", type=Path, default=Path("data"))
    prune.add_argument("--database-url", default=None)
    prune.add_argument(
        "--older-than",
        type=_duration,
        default=None,
        help="e.g. 30d, 12h, 90m, 0s (default: BRIDGELINE_RETENTION_DAYS, 30 days); conferences and runs",
    )
    prune.set_defaults(func=_prune)

    nodes = commands.add_parser(
        "nodes", help="the live nodes of the cluster sharing this store (docs/cluster.md)"
    )
    nodes.add_argument("--data-dir", type=Path, default=Path("data"))
    nodes.add_argument("--database-url", default=None)
    nodes.set_defaults(func=_nodes)
    return parser


def _duration(text: str) -> float:
    """Seconds from `30d`, `12h`, `90m`, `45s` or a bare number of days."""
    units = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}
    value, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, units["d"])
    try:
        seconds = float(value) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m, 45s)") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}")
    return seconds


def _serve(args: argparse.Namespace) -> int:
    from bridgeline.logs import configure_logging, log_level
    from bridgeline.main import run_event_loop, serve

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        carrier=args.carrier,
        sip_listen=args.sip_listen,
        sip_config=args.sip_config,
        database_url=args.database_url,
        sim_answer_delay_ms=args.sim_answer_delay_ms,
        media_dir=args.media_dir,
        log_level=args.log_level,
        **{name: getattr(args, name) for name in EDGE_SETTINGS},
        **{name: getattr(args, name) for name in CLUSTER_SETTINGS},
    )
    try:
        level = log_level(settings.log_level)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    configure_logging(settings.log_format, level)
    from bridgeline.app.cluster import NodeIdInUse

    try:
        run_event_loop(serve(settings))
    except NodeIdInUse as exc:  # a configuration mistake, said plainly rather than as a traceback
        raise CliError(str(exc)) from None
    return EXIT_OK


def _phlo_create(args: argparse.Namespace) -> int:
    import yaml

    try:
        definition = yaml.safe_load(args.file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from exc
    data = request(args, "POST", "/v1/phlo", definition)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"phlo_id  {data['phlo_id']}  {data['name']}")
    for node in data["nodes"]:
        print(f"node_id  {node['node_id']}  {node['node_type']}  {node['name']}")
    return EXIT_OK


def _phlo_list(args: argparse.Namespace) -> int:
    data = request(args, "GET", "/v1/phlo")
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for phlo in data["objects"]:
        nodes = ", ".join(f"{n['name']}={n['node_id']}" for n in phlo["nodes"])
        print(f"{phlo['phlo_id']}  {phlo['name']}  [{nodes}]")
    return EXIT_OK


def _on_store(args: argparse.Namespace, work: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Run `work` on the accounts of the store the server of this data directory (or --database-url) uses."""
    import asyncio

    from bridgeline.adapters.store import open_store

    settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> T:
        store = open_store(settings.store_url)
        try:
            await store.migrate()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _print_credentials(account: Account) -> None:
    print(f"BRIDGELINE_AUTH_ID={account.auth_id}\nBRIDGELINE_AUTH_TOKEN={account.auth_token}")


def _account_add(args: argparse.Namespace) -> int:
    from bridgeline.app.records import Account

    account = Account(new_auth_id("SA" if args.sub else "MA"), new_auth_token(), time.time())
    _on_store(args, lambda store: store.put_account(account))
    _print_credentials(account)
    return EXIT_OK


def _account_rotate_token(args: argparse.Namespace) -> int:
    from bridgeline.app.records import Account

    async def rotate(store: AccountStore) -> Account | None:
        account = await store.get_account(args.auth_id)
        if account is None:
            return None
        rotated = Account(account.auth_id, new_auth_token(), account.created_at)
        await store.put_account(rotated)
        return rotated

    rotated = _on_store(args, rotate)
    if rotated is None:
        raise CliError(f"no account {args.auth_id}", EXIT_REFUSED)
    _print_credentials(rotated)
    print(f"# a running server refuses the old token within {CACHE_NOTE}", file=sys.stderr)
    return EXIT_OK


def _account_remove(args: argparse.Namespace) -> int:
    if not _on_store(args, lambda store: store.delete_account(args.auth_id)):
        raise CliError(f"no account {args.auth_id}", EXIT_REFUSED)
    print(f"removed {args.auth_id}; a running server refuses it within {CACHE_NOTE}")
    return EXIT_OK


def _prune(args: argparse.Namespace) -> int:
    import asyncio

    from bridgeline.adapters.store import open_store
    from bridgeline.app.retention import DAY, Pruner

    settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    conferences = settings.retention_days * DAY if args.older_than is None else args.older_than
    runs = settings.run_retention_days * DAY if args.older_than is None else args.older_than
    if args.older_than == 0:
        conferences = runs = 1e-9  # "older than nothing": everything finished, not "keep forever"

    async def prune() -> tuple[int, int, int]:
        store = open_store(settings.store_url)
        try:
            await store.migrate()
            pruner = Pruner(
                store,
                conference_retention=conferences,
                run_retention=runs,
                idempotency_retention=settings.idempotency_ttl_s,  # past it a key is unknown anyway
                batch=settings.prune_batch,
            )
            done = await pruner.prune_once()
            return done.conferences, done.runs, done.idempotency_keys
        finally:
            await store.close()

    pruned_conferences, pruned_runs, pruned_keys = asyncio.run(prune())
    print(
        f"pruned {pruned_conferences} conferences (with their events and deliveries), {pruned_runs} runs,"
        f" {pruned_keys} idempotency keys"
    )
    return EXIT_OK


def _nodes(args: argparse.Namespace) -> int:
    """One line per node whose lease holds: id, epoch, state, load, and where it is reached."""
    import asyncio

    from bridgeline.adapters.store import open_store

    settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)

    async def live() -> list[tuple[str, ...]]:
        store = open_store(settings.store_url)
        try:
            await store.migrate()
            now = time.time()
            return [
                (
                    node.node_id,
                    str(node.epoch),
                    node.state.value,
                    f"{node.live_conferences} conferences",
                    f"{node.live_legs} legs",
                    node.internal_url,
                    f"lease {max(0.0, node.lease_until - now):.1f} s",
                )
                for node in await store.live_nodes()
            ]
        finally:
            await store.close()

    for row in asyncio.run(live()):
        print("  ".join(row))
    return EXIT_OK
