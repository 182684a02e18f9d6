"""The web tier around a real resync: the maintenance page up first and down last, and the
rebuilt server's HAProxy membership drained before it stops and restored once verified
(issue 9 items 1 and 3), on real MariaDB and a real HAProxy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import journal_of, resync, seed_incident
from webtier import require

from resync.testing.web import HAProxy, get, running_app, running_haproxy, web_root


@pytest.fixture
def haproxy() -> Iterator[HAProxy]:
    require("haproxy", "socat")
    with web_root() as root, running_app() as app, running_haproxy(root, app) as proxy:
        yield proxy


def test_a_run_behind_the_page_drains_and_restores_the_rebuilt_member(
        tmp_path: Path, sandbox_pair: Any, haproxy: HAProxy) -> None:
    runbook = seed_incident(tmp_path, sandbox_pair)
    doc = yaml.safe_load(runbook.read_text())
    page = haproxy.url(haproxy.page_port)
    doc["maintenance"] = {"kind": "haproxy_map", "socket": str(haproxy.socket),
                          "map": str(haproxy.map), "key": "maint",
                          "probe": {"url": page, "expect_text": "Down for maintenance",
                                    "health_url": haproxy.url(haproxy.page_port, "/health")}}
    doc["hosts"]["db1"]["lb"] = [{"kind": "haproxy", "socket": str(haproxy.socket),
                                  "backend": "web", "server": "s1", "timeout": 10}]
    runbook.write_text(yaml.safe_dump(doc, sort_keys=False))

    plan = json.loads(resync(tmp_path, "plan", "--format", "json", str(runbook),
                             check=True).stdout)
    keys = [s["key"] for s in plan["steps"]]
    assert keys[1:3] == ["maintenance-on", "lb-drain:db1"], "the page and the drain come first"
    assert keys[-3:-1] == ["lb-restore:db1", "maintenance-off"], (
        "restore and page off come once the new primary takes writes")
    assert keys[-1] == "verify-data:db1=db2", "verify runs after, out of the downtime"

    resync(tmp_path, "run", "--yes", str(runbook), check=True)
    assert get(page)[0] == 200, "the page is off after the run"
    state = haproxy.runtime("show servers state web")
    s1 = next(line.split() for line in state.splitlines() if " s1 " in f" {line} ")
    assert s1[6] == "0", f"s1 is back in service (srv_admin_state 0): {state}"

    journal = json.loads(journal_of(tmp_path).read_text())
    states = {s["key"]: s["state"] for s in journal["steps"]}
    assert all(states[k] == "done" for k in ("maintenance-on", "lb-drain:db1",
                                             "lb-restore:db1", "maintenance-off"))
    drained = [c["text"] for c in journal["commands"] if c["step"] == "lb-drain:db1"]
    assert any("set server web/s1 state drain" in t for t in drained), drained
