"""`bridgeline calls`, `bridgeline member ACTION`, `bridgeline mpc ACTION`, `bridgeline record ACTION`:
live calls from a terminal.

They use the same HTTP API as every client (the Plivo-compatible POST routes for actions, the
console's state and event stream for listing and watching), with client.py's conventions: 0 done,
1 refused by the server (its error message on stderr), 2 usage or connection error.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from bridgeline.cli.client import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, CliError, request

MEMBER_ACTIONS = {
    "hold": "put a member on hold (they hear hold music)",
    "unhold": "take a member off hold",
    "mute": "mute a member: nobody hears them, they still hear the call",
    "unmute": "let a muted member be heard again",
    "hangup": "hang a member up",
    "resume_call": "end a warm transfer's consultation: initiator and target join the main room",
    "voicemail_drop": "play the node's voicemail message to a member, then hang up",
    "abort_transfer": "cancel the member's transfer in progress",
}
MPC_ACTIONS = {
    "call": "dial a party into the conference",
    "warm_transfer": "consult a party privately; then hang up to hand over, or resume_call",
    "cold_transfer": "dial a party that replaces the trigger source once it answers",
}

RECORD_ACTIONS = {
    "start": "start the conference recording (or --member's track)",
    "stop": "stop it; its file is finished and a Completed event follows",
    "pause": "pause it: silence is recorded meanwhile, so the timeline is kept",
    "resume": "resume a paused recording",
}

ClientOptions = Callable[[argparse.ArgumentParser], None]
Command = Callable[[argparse.Namespace], int]


def add_commands(commands: Any, client_options: ClientOptions) -> None:
    """Register the subcommands on commands.py's subparsers."""
    calls = commands.add_parser("calls", help="list live conferences, or watch their events (`calls watch`)")
    calls.add_argument("mode", nargs="?", choices=["list", "watch"], default="list", help="default: list")
    calls.add_argument("--phlo", help="only this PHLO's conferences")
    calls.add_argument("--count", type=int, default=None, help="watch: stop after N events")
    calls.add_argument("--timeout", type=float, default=None, help="watch: stop after S seconds")
    client_options(calls)
    calls.set_defaults(func=_calls)

    member = commands.add_parser("member", help="act on a member of a live conference")
    actions = member.add_subparsers(required=True, metavar="ACTION")
    for action, text in MEMBER_ACTIONS.items():
        aliases = [action.replace("_", "-")] if "_" in action else []
        parser = actions.add_parser(action, aliases=aliases, help=text)
        parser.add_argument("address", help="the member's address, e.g. +14155550100")
        _node_options(parser)
        client_options(parser)
        parser.set_defaults(func=_member_action, action=action)

    mpc = commands.add_parser("mpc", help="call a party into a live conference, or transfer")
    actions = mpc.add_subparsers(required=True, metavar="ACTION")
    for action, text in MPC_ACTIONS.items():
        aliases = [action.replace("_", "-")] if "_" in action else []
        parser = actions.add_parser(action, aliases=aliases, help=text)
        _node_options(parser)
        parser.add_argument("--to", required=True, help="the address to dial")
        parser.add_argument("--trigger-source", required=True, help="the member who acts")
        parser.add_argument("--role", choices=["agent", "customer"], default="agent")
        client_options(parser)
        parser.set_defaults(func=_mpc_action, action=action)

    record = commands.add_parser("record", help="start, stop, pause or resume a live conference's recording")
    actions = record.add_subparsers(required=True, metavar="ACTION")
    for action, text in RECORD_ACTIONS.items():
        parser = actions.add_parser(action, help=text)
        _node_options(parser)
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--trigger-source", help="a member of the conference whose recording it is")
        who.add_argument("--member", help="that member's own track (participant recording)")
        if action == "start":
            parser.add_argument("--format", choices=["wav", "mp3"], help="default: the node's setting")
        client_options(parser)
        parser.set_defaults(func=_record_action, action=action)


def _node_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phlo", required=True, help="the PHLO id")
    parser.add_argument("--node", help="the Multi-Party Call node id (default: the PHLO's only one)")


# --------------------------------------------------------------------------- actions
def _node_path(args: argparse.Namespace) -> str:
    node = args.node or _only_node(args)
    return f"/v1/phlo/{quote(args.phlo, safe='')}/multi_party_call/{quote(node, safe='')}"


def _only_node(args: argparse.Namespace) -> str:
    listing = request(args, "GET", "/v1/phlo")
    phlo = next((p for p in listing["objects"] if p["phlo_id"] == args.phlo), None)
    if phlo is None:
        raise CliError(f"404: PHLO {args.phlo} not found", EXIT_REFUSED)
    nodes = [n["node_id"] for n in phlo["nodes"]]
    if len(nodes) != 1:
        raise CliError(f"PHLO {args.phlo} has {len(nodes)} nodes ({', '.join(nodes)}): pass --node")
    return str(nodes[0])


def _member_action(args: argparse.Namespace) -> int:
    path = f"{_node_path(args)}/members/{quote(args.address, safe='')}"
    data = request(args, "POST", path, {"action": args.action})
    print(json.dumps(data) if args.json else f"{args.action} {args.address}: ok")
    return EXIT_OK


def _mpc_action(args: argparse.Namespace) -> int:
    body = {"action": args.action, "to": args.to, "trigger_source": args.trigger_source, "role": args.role}
    data = request(args, "POST", _node_path(args), body)
    if args.json:
        print(json.dumps(data))
    else:
        print(f"{args.action} {args.to} ({args.role}) from {args.trigger_source}: ok")
    return EXIT_OK


def _record_action(args: argparse.Namespace) -> int:
    body: dict[str, str] = {"action": args.action}
    if getattr(args, "format", None):
        body["file_format"] = args.format
    if args.member:
        path = f"{_node_path(args)}/member_recording/{quote(args.member, safe='')}"
        what = f"{args.member}'s track"
    else:
        path, what = f"{_node_path(args)}/recording", "the conference recording"
        body["trigger_source"] = args.trigger_source
    data = request(args, "POST", path, body)
    print(json.dumps(data) if args.json else f"{args.action} {what}: ok ({data.get('mpc_uuid', '')})")
    return EXIT_OK


# --------------------------------------------------------------------------- calls
def _calls(args: argparse.Namespace) -> int:
    if args.mode == "watch":
        from bridgeline.cli.watch import watch

        return watch(args)
    if args.count is not None or args.timeout is not None:
        raise CliError("--count and --timeout apply to `calls watch` only", EXIT_USAGE)
    path = "/v1/console/state" + (f"?phlo_id={quote(args.phlo, safe='')}" if args.phlo else "")
    state = request(args, "GET", path)
    live = [c["view"] for c in state["conferences"] if c["view"]["status"] == "live"]
    if args.json:
        print(json.dumps({"meta": {"count": len(live)}, "objects": live}, indent=2))
        return EXIT_OK
    if not live:
        print("no live conferences")
        return EXIT_OK
    for view in live:
        for line in conference_lines(view, float(state["server_time"])):
            print(line)
    return EXIT_OK


def seconds_since(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    return now - datetime.fromisoformat(stamp).timestamp()


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def hearing(member: dict[str, Any]) -> str:
    if member["music"]:
        return f"hears music:{member['music']}"
    if member["hears"]:
        return "hears " + ", ".join(member["hears"])
    return "hears nobody" if member["status"] in ("connected", "on_hold") else ""


def conference_lines(view: dict[str, Any], now: float) -> list[str]:
    """A conference and its members, one line each; durations as of `now` (the server's clock)."""
    lines = [
        f"{view['phlo_id']}/{view['node_id']}  {view['mpc_uuid']}  {view['status']}  "
        f"{clock(seconds_since(view['started_on'], now))}"
    ]
    width = max((len(m["member_address"]) for m in view["members"]), default=0)
    for m in view["members"]:
        if m["status"] == "left":
            continue
        since = m["dialed_on"] if m["status"] == "dialing" else m["connected_on"]
        room = "" if m["room"] == "main" else f"  room {m['room']}"
        lines.append(
            f"  {m['member_address']:<{width}}  {m['role']:<8}  {m['status']:<9}  "
            f"{clock(seconds_since(since, now)):>5}  {hearing(m)}{room}".rstrip()
        )
    for queued in view["queued"]:
        lines.append(f"  {queued['address']:<{width}}  {queued['role']:<8}  queued")
    return lines


def event_line(message: dict[str, Any]) -> str:
    """One readable line for one event of the stream."""
    event = message["event"]
    data = event["data"]
    when = time.strftime("%H:%M:%S", time.localtime(event["at"])) + f".{int(event['at'] * 1000) % 1000:03d}"
    subject = ""
    if "recording_id" in data:  # a recording event (a participant track's also names its member)
        member = f" of {data['member_address']}" if data.get("member_address") else ""
        subject = f"{data['recording_id']}{member}"
    elif "member_address" in data:
        subject = f"{data['member_address']} ({data['role']})"
    elif "transfer_type" in data:
        subject = f"{data['transfer_type']} {data['initiator']} -> {data['target']}"
    keys = ("status", "reason", "outcome", "transfer_state", "recording_state")
    details = [f"{key}={data[key]}" for key in keys if key in data]
    text = f"{when}  {message['mpc_uuid'][:8]}  #{event['sequence']:<3} {event['event']:<19} {subject}"
    return f"{text}  {' '.join(details)}".rstrip()
