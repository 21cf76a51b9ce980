"""What the import contracts cannot see in the pure packages (docs/architecture.md, "Rule between layers").

import-linter ([tool.importlinter] in pyproject.toml) keeps clock, socket, thread, process and file
modules out of `core`, `phlo`, `sip` and `media`. A few ways to read the clock, use the global random
generator or do I/O pass through modules that are allowed for their other uses; this finds them:
`datetime.now()`/`date.today()`, `random.random()`-style calls on the random module (an injected
`random.Random` is the way), `uuid.uuid1/uuid4`, `urllib.request`, and the builtins `open`, `input`,
`print`. Run by `make lint`; prints `file:line: message` for each and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PURE_PACKAGES = ("core", "phlo", "sip", "media")

# Known findings (file, key), each with why it stays for now; one that matches nothing is reported.
EXCEPTIONS = frozenset(
    {
        # A PHLO node posted without node_id gets a random one as pydantic's default; an injected
        # generator would have to reach the model through validation context: not a small change.
        ("phlo/definition.py", "uuid.uuid4"),
    }
)

_CLOCK_CLASSES = frozenset({"datetime", "date"})
_CLOCK_METHODS = frozenset({"now", "utcnow", "today"})
_RANDOM_CLASSES = frozenset({"Random", "SystemRandom"})  # types to annotate an injected generator
_UUID_RANDOM = frozenset({"uuid1", "uuid4"})  # uuid1 reads the clock, uuid4 the OS entropy
_IO_BUILTINS = frozenset({"open", "input", "print"})


@dataclass(frozen=True)
class Finding:
    path: Path  # relative to the package root
    line: int
    key: str  # what EXCEPTIONS match on, e.g. "random.random"
    message: str


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.modules: dict[str, str] = {}  # local name -> "random" or "uuid" for `import random as r`
        self.clock_classes = set(_CLOCK_CLASSES)  # and their aliases: `from datetime import date as d`

    def _add(self, node: ast.AST, key: str, message: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), key, message))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in ("random", "uuid"):
                self.modules[alias.asname or alias.name] = alias.name
            elif alias.name == "urllib.request":
                self._add(node, "urllib.request", "imports urllib.request: network I/O belongs in an adapter")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            name = alias.name
            if node.module == "datetime" and name in _CLOCK_CLASSES:
                self.clock_classes.add(alias.asname or name)
            elif node.module == "random" and name not in _RANDOM_CLASSES:
                self._add(node, f"random.{name}", _random_message(f"from random import {name}"))
            elif node.module == "uuid" and name in _UUID_RANDOM:
                self._add(node, f"uuid.{name}", _uuid_message(f"from uuid import {name}"))
            elif node.module == "urllib.request" or (node.module == "urllib" and name == "request"):
                self._add(node, "urllib.request", "imports urllib.request: network I/O belongs in an adapter")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _IO_BUILTINS:
            self._add(node, func.id, f"calls {func.id}(): I/O belongs in an adapter")
        elif isinstance(func, ast.Attribute):
            owner = _last_name(func.value)
            module = self.modules.get(owner) if isinstance(func.value, ast.Name) else None
            if owner in self.clock_classes and func.attr in _CLOCK_METHODS:
                self._add(
                    node,
                    f"{owner}.{func.attr}",
                    f"reads the clock: {owner}.{func.attr}(); take `now` as an argument",
                )
            elif module == "random" and func.attr not in _RANDOM_CLASSES:
                self._add(node, f"random.{func.attr}", _random_message(f"{owner}.{func.attr}()"))
            elif module == "uuid" and func.attr in _UUID_RANDOM:
                self._add(node, f"uuid.{func.attr}", _uuid_message(f"{owner}.{func.attr}()"))
        self.generic_visit(node)


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


def _random_message(what: str) -> str:
    return f"uses the global random generator: {what}; take a random.Random as an argument"


def _uuid_message(what: str) -> str:
    return f"makes a random or clock-based id: {what}; take a random.Random as an argument"


def findings_in(package_root: Path) -> Iterator[Finding]:
    """Every finding in the pure packages under `package_root` (the `bridgeline` directory)."""
    for package in PURE_PACKAGES:
        for path in sorted((package_root / package).rglob("*.py")):
            relative = path.relative_to(package_root)
            visitor = _Visitor(relative)
            visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            yield from visitor.findings


def problems(package_root: Path) -> list[str]:
    """The findings not excepted, then the exceptions that no longer match anything."""
    found = list(findings_in(package_root))
    matched = {(f.path.as_posix(), f.key) for f in found}
    out = [
        f"{package_root / f.path}:{f.line}: {f.message}"
        for f in found
        if (f.path.as_posix(), f.key) not in EXCEPTIONS
    ]
    out += [
        f"{package_root / path}: the exception for {key} in tools/check_purity.py matches nothing: remove it"
        for path, key in EXCEPTIONS
        if (path, key) not in matched
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Clock, randomness and I/O calls in the pure packages.")
    parser.add_argument("package_root", nargs="?", type=Path, default=Path("src/bridgeline"))
    found = problems(parser.parse_args(argv).package_root)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} purity problem(s) in {', '.join(PURE_PACKAGES)}: see docs/architecture.md")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
