"""The suite's own layout: test modules are imported by basename (rootdir-relative, no
packages), so a basename used in both tests/unit and tests/integration breaks collection of
the whole suite (regression: test_direction, test_ebs_aws and test_ebs_discovery once did)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_test_module_name_is_used_twice() -> None:
    names: dict[str, list[str]] = {}
    for path in TESTS.rglob("*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(TESTS)))
    twice = {name: where for name, where in names.items() if len(where) > 1}
    assert twice == {}, f"module names used twice (rename one): {twice}"
