"""The rule between layers (docs/architecture.md) as `make lint` checks it: import-linter's contracts
in pyproject.toml, on the real tree and on a copy with one violation."""

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
    "an adapter imports another": (
        "adapters/egress.py",
        "from bridgeline.adapters import metrics\n",
        "bridgeline.adapters.egress is not allowed to import bridgeline.adapters.metrics",
    ),
    "a top-level module in no layer": (
        "extra.py",
        "",
        "The following modules are not listed as layers: - bridgeline.extra",
    ),
    "a listed cross-import that is gone": (
        "adapters/webhooks.py",
        ("from bridgeline.adapters.signing import new_nonce, sign_v3\n", ""),
        "No matches for ignored import bridgeline.adapters.webhooks -> bridgeline.adapters.signing",
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
