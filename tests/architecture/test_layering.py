"""The rule between layers (docs/architecture.md) as `make lint` checks it: import-linter's contracts
in pyproject.toml and tools/check_purity.py, on the real tree and on a copy with one violation."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _copy_project(tmp_path: Path) -> Path:
    """A copy of the source tree and pyproject.toml; returns the copied `bridgeline` directory."""
    package = tmp_path / "src" / "bridgeline"
    shutil.copytree(ROOT / "src" / "bridgeline", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return package


def _run(command: list[str | Path], project: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "COLUMNS": "200"}
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def _lint_imports(project: Path) -> tuple[int, str]:
    code, out = _run([BIN / "lint-imports", "--no-logo", "--no-cache"], project)
    return code, " ".join(out.split())  # rich wraps long lines


def _check_purity(package: Path) -> tuple[int, list[str]]:
    code, out = _run([sys.executable, ROOT / "tools" / "check_purity.py", package], package.parents[1])
    return code, out.splitlines()


def test_the_tree_keeps_every_import_contract() -> None:
    code, out = _lint_imports(ROOT)
    assert code == 0, out
    assert "0 broken" in out


# (file under bridgeline/, text it gets, or (old, new) replaced in it; what lint-imports must say)
IMPORT_VIOLATIONS = {
    "pure imports an adapter": (
        "core/_violation.py",
        "import bridgeline.adapters.egress\n",
        "bridgeline.core is not allowed to import bridgeline.adapters: "
        "- bridgeline.core._violation -> bridgeline.adapters.egress (l.1)",
    ),
    "pure imports the configuration": (
        "phlo/_violation.py",
        "from bridgeline import config\n",
        "bridgeline.phlo is not allowed to import bridgeline.config",
    ),
    "pure reads the clock module": (
        "media/_violation.py",
        "import time\n",
        "bridgeline.media is not allowed to import time: - bridgeline.media._violation -> time (l.1)",
    ),
    "pure opens a socket": (
        "sip/_violation.py",
        "import socket\n",
        "bridgeline.sip is not allowed to import socket",
    ),
    "one pure package imports a sibling": (
        "sip/_violation.py",
        "from bridgeline.media import g711\n",
        "bridgeline.sip is not allowed to import bridgeline.media",
    ),
    "app imports an adapter": (
        "app/_violation.py",
        "from bridgeline.adapters import store\n",
        "bridgeline.app is not allowed to import bridgeline.adapters",
    ),
    "app talks to a database itself": (
        "app/_violation.py",
        "import psycopg\n",
        "bridgeline.app is not allowed to import psycopg",
    ),
    "a shared adapter imports one above it": (
        "adapters/egress.py",
        "from bridgeline.adapters.http import metrics\n",
        "bridgeline.adapters.egress is not allowed to import bridgeline.adapters.http",
    ),
    "one sibling adapter imports another": (
        "adapters/console/_violation.py",
        "from bridgeline.adapters.store import open_store\n",
        "bridgeline.adapters.console is not allowed to import bridgeline.adapters.store",
    ),
    "a carrier imports another carrier": (
        "adapters/carriers/sip/_violation.py",
        "from bridgeline.adapters.carriers.sim.carrier import SimCarrier\n",
        "bridgeline.adapters.carriers.sip is not allowed to import bridgeline.adapters.carriers.sim",
    ),
    "a top-level module in no layer": (
        "extra.py",
        "",
        "The following modules are not listed as layers: - bridgeline.extra",
    ),
    "an adapter in no group": (
        "adapters/ftp.py",
        "",
        "The following modules are not listed as layers: - bridgeline.adapters.ftp",
    ),
}


@pytest.mark.parametrize("case", IMPORT_VIOLATIONS)
def test_an_import_violation_breaks_lint_imports(tmp_path: Path, case: str) -> None:
    name, change, expected = IMPORT_VIOLATIONS[case]
    path = _copy_project(tmp_path) / name
    before = path.read_text() if path.exists() else ""
    if isinstance(change, tuple):
        assert change[0] in before
        path.write_text(before.replace(change[0], change[1]))
    else:
        path.write_text(before + change)
    code, out = _lint_imports(tmp_path)
    assert code != 0, out
    assert expected in out


def test_the_pure_packages_pass_the_purity_check() -> None:
    assert _check_purity(ROOT / "src" / "bridgeline") == (0, [])


PURITY_VIOLATIONS = {
    "core/_clock.py": """\
import datetime as dt
from datetime import date, datetime
from datetime import datetime as moment


def stamps() -> object:
    return datetime.now(), dt.datetime.utcnow(), date.today(), moment.now()
""",
    "media/_rng.py": """\
import random
import random as r
from random import Random, choice

NOISE = random.random()
PICK = r.randint(1, 6)
OWN = Random(7)
FINE = OWN.random()
""",
    "sip/_ids.py": """\
import uuid
from uuid import uuid1

TAG = uuid.uuid4().hex
PARSED = uuid.UUID(int=1)
""",
    "phlo/_io.py": """\
import urllib.request


def load(path: str) -> str:
    print(path)
    with open(path) as f:
        return f.read()
""",
}


def test_clock_randomness_and_io_calls_are_reported_by_file_and_line(tmp_path: Path) -> None:
    package = _copy_project(tmp_path)
    for name, text in PURITY_VIOLATIONS.items():
        (package / name).write_text(text)
    code, lines = _check_purity(package)
    assert code == 1
    clock, rng, ids = (
        "; take `now` as an argument",
        "; take a random.Random as an argument",
        "random or clock-based id",
    )
    assert sorted(line.removeprefix(f"{package}/") for line in lines[:-1]) == [
        f"core/_clock.py:7: reads the clock: date.today(){clock}",
        f"core/_clock.py:7: reads the clock: datetime.now(){clock}",
        f"core/_clock.py:7: reads the clock: datetime.utcnow(){clock}",
        f"core/_clock.py:7: reads the clock: moment.now(){clock}",
        f"media/_rng.py:3: uses the global random generator: from random import choice{rng}",
        f"media/_rng.py:5: uses the global random generator: random.random(){rng}",
        f"media/_rng.py:6: uses the global random generator: r.randint(){rng}",
        "phlo/_io.py:1: imports urllib.request: network I/O belongs in an adapter",
        "phlo/_io.py:5: calls print(): I/O belongs in an adapter",
        "phlo/_io.py:6: calls open(): I/O belongs in an adapter",
        f"sip/_ids.py:2: makes a {ids}: from uuid import uuid1{rng}",
        f"sip/_ids.py:4: makes a {ids}: uuid.uuid4(){rng}",
    ]
    assert lines[-1].startswith("12 purity problem(s)")


def test_an_exception_that_matches_nothing_is_reported(tmp_path: Path) -> None:
    definition = _copy_project(tmp_path) / "phlo" / "definition.py"
    text = definition.read_text()
    assert "uuid.uuid4()" in text
    definition.write_text(text.replace("uuid.uuid4()", "'node'"))
    code, lines = _check_purity(definition.parents[1])
    assert code == 1
    assert (
        lines[0]
        == f"{definition}: the exception for uuid.uuid4 in tools/check_purity.py matches nothing: remove it"
    )
