"""pytest imports test modules by basename (no packages under tests/): two folders with a module of
the same name stop the whole suite at collection, so that is caught here, with both paths."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_helpers_or_modules_share_a_basename() -> None:
    paths: defaultdict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("*.py"):
        if path.name != "conftest.py" and "__pycache__" not in path.parts:
            paths[path.name].append(str(path.relative_to(TESTS)))
    assert {name: where for name, where in paths.items() if len(where) > 1} == {}
