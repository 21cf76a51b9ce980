"""The `bridgeline` command: commands.py parses and runs it; calls.py and watch.py add live-call commands."""

from bridgeline.cli.commands import main

__all__ = ["main"]
