"""The maintenance page against a real web tier on 127.0.0.1 (resync/testing/web.py):
HAProxy's runtime API over its admin socket (map entry; servers in maint), nginx with a flag file,
the runbook's own commands; probed over HTTP. Then `resync maintenance on|off|status` end to end.

The runbooks' MySQL hosts point at ports where nothing listens: these commands never touch MySQL
(and need no password variable set). Last, `resync demo --with-web` end to end (real mariadbd).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import resync, step_states
from webtier import (
    APP_TEXT,
    MARKER,
    HAProxy,
    Nginx,
    get,
    require,
    running_app,
    running_haproxy,
    running_nginx,
    web_root,
)

from resync.actions.types import Action, Shell
from resync.model.errors import ResyncError, StepFailed
from resync.model.keys import StepId, StepKind
from resync.model.maintenance import MaintenanceSettings
from resync.plan.document import step_view
from resync.run.engine import Engine
from resync.run.executor import Executor
from resync.run.journal import Journal, MemoryJournal
from resync.steps.base import Step
from resync.steps.maintenance import (
    PROBE_SEES_PAGE,
    STATE,
    MaintenanceOff,
    MaintenanceOn,
    flag_state,
    off_actions,
    on_actions,
    status_actions,
)
from resync.transport.local import LocalHost


@pytest.fixture
def haproxy() -> Iterator[HAProxy]:
    require("haproxy", "socat")
    with web_root() as root, running_app() as app, running_haproxy(root, app) as lb:
        yield lb


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    require("nginx")
    with web_root() as root, running_nginx(root) as web:
        yield web


def executor(journal: Journal | None = None) -> Executor:
    def no_mysql(name: str) -> Any:
        raise AssertionError("the maintenance page must not touch MySQL")

    return Executor(journal or MemoryJournal("maintenance"), hosts=LocalHost, connect=no_mysql)


def run(actions: Any) -> Executor:
    exe = executor()
    exe.begin("test")
    try:
        exe.run(actions)
    finally:
        exe.close()
    return exe


def map_page(h: HAProxy, **extra: Any) -> MaintenanceSettings:
    return MaintenanceSettings.model_validate({
        "kind": "haproxy_map", "socket": str(h.socket), "map": str(h.map), "key": "maint",
        "probe": {"url": h.url(h.page_port), "expect_text": MARKER,
                  "health_url": h.url(h.page_port, "/health"), **extra}})


def map_entries(h: HAProxy) -> list[str]:
    return [line for line in h.runtime(f"show map {h.map}").splitlines() if line.strip()]


def admin_states(h: HAProxy) -> dict[str, int]:
    rows = [line.split() for line in h.runtime("show servers state web").splitlines()]
    return {r[3]: int(r[6]) for r in rows if len(r) > 6 and r[1] == "web"}


def whens(exe: Executor) -> list[str | None]:
    return [r.result for r in exe.journal.data.commands if r.kind == "when"]


def test_haproxy_map_page_on_off_status_and_idempotent(haproxy: HAProxy) -> None:
    m, url = map_page(haproxy), haproxy.url(haproxy.page_port)
    assert get(url) == (200, f"{APP_TEXT}\n")

    exe = run(on_actions(m))
    status, body = get(url)
    assert status == 503 and MARKER in body
    assert get(haproxy.url(haproxy.page_port, "/health")) == (200, "ok\n")
    assert len(map_entries(haproxy)) == 1 and map_entries(haproxy)[0].endswith(" maint on")
    assert whens(exe) == ["then"]
    probe = exe.journal.data.commands[-1]
    assert probe.kind == "http" and probe.ok and f"503, with '{MARKER}'" in (probe.detail or "")

    again = run(on_actions(m))  # on twice: the entry is there, nothing is added
    assert whens(again) == ["else"] and len(map_entries(haproxy)) == 1

    seen = run(status_actions(m)).captured
    assert (seen[str(STATE)], seen[str(PROBE_SEES_PAGE)]) == ("on", 1)

    exe = run(off_actions(m))
    assert get(url) == (200, f"{APP_TEXT}\n") and map_entries(haproxy) == []
    assert whens(exe) == ["then"]
    assert whens(run(off_actions(m))) == ["else"]  # off twice: nothing to remove
    seen = run(status_actions(m)).captured
    assert (seen[str(STATE)], seen[str(PROBE_SEES_PAGE)]) == ("off", 0)


def servers_page(h: HAProxy) -> MaintenanceSettings:
    return MaintenanceSettings.model_validate({
        "kind": "haproxy_servers", "socket": str(h.socket), "backend": "web",
        "probe": {"url": h.url(h.pool_port), "expect_text": MARKER,
                  "health_url": h.url(h.pool_port, "/health")}})


def test_haproxy_servers_in_maint_serve_the_errorfile_page(haproxy: HAProxy) -> None:
    m, url = servers_page(haproxy), haproxy.url(haproxy.pool_port)
    exe = run(on_actions(m))
    assert exe.captured["maintenance.servers.maint"] == "s1\ns2"
    status, body = get(url)
    assert status == 503 and MARKER in body
    assert admin_states(haproxy) == {"s1": 1, "s2": 1}
    run(on_actions(m))  # twice: still in maint, no error
    assert run(status_actions(m)).captured[str(STATE)] == "on (s1 maint, s2 maint)"
    run(off_actions(m))
    assert get(url) == (200, f"{APP_TEXT}\n")
    assert run(status_actions(m)).captured[str(STATE)] == "off (s1 ready, s2 ready)"


def test_an_unknown_map_fails_with_haproxys_answer(haproxy: HAProxy) -> None:
    m = MaintenanceSettings.model_validate({**map_page(haproxy).model_dump(by_alias=True),
                                            "map": "/etc/haproxy/other.map"})
    with pytest.raises(ResyncError, match="haproxy: Unknown map identifier"):
        run(on_actions(m))
    assert get(haproxy.url(haproxy.page_port))[0] == 200


def flag_page(n: Nginx, **probe: Any) -> MaintenanceSettings:
    return MaintenanceSettings.model_validate({
        "kind": "flag_file", "hosts": ["web1"], "path": str(n.flag),
        "probe": {"url": n.url(), "expect_text": MARKER, "health_url": n.url("/health"),
                  **probe}})


def test_nginx_flag_file_page_probed_from_a_host(nginx: Nginx) -> None:
    m = flag_page(nginx, **{"from": "web1"})  # the probe runs python3 on web1 (a LocalHost)
    exe = run(on_actions(m))
    assert nginx.flag.exists()
    status, body = get(nginx.url())
    assert status == 503 and MARKER in body
    assert get(nginx.url("/health")) == (200, "ok\n")
    probe = exe.journal.data.commands[-1]
    assert probe.host == "web1" and "python3 urllib" in probe.text and probe.ok
    assert run(status_actions(m)).captured[str(flag_state("web1"))] == "on"
    run(off_actions(m))
    assert not nginx.flag.exists() and get(nginx.url()) == (200, f"{APP_TEXT}\n")
    run(off_actions(m))  # rm -f: off twice is fine
    assert run(status_actions(m)).captured[str(flag_state("web1"))] == "off"


def test_commands_with_a_probe_that_does_not_see_the_page(nginx: Nginx) -> None:
    m = MaintenanceSettings.model_validate({
        "kind": "command", "on_cmd": "true", "off_cmd": f"rm -f {nginx.flag}",
        "status_cmd": f"test -f {nginx.flag} && echo up || echo down",
        "probe": {"url": nginx.url(), "expect_text": MARKER, "timeout": 1}})
    with pytest.raises(ResyncError, match="the maintenance page is not served as expected: "
                                          r"http://127\.0\.0\.1:\d+/: 200, without"):
        run(on_actions(m))
    assert run(status_actions(m)).captured[str(STATE)] == "down"
    good = MaintenanceSettings.model_validate({**m.model_dump(by_alias=True),
                                               "on_cmd": f"touch {nginx.flag}"})
    run(on_actions(good))
    assert run(status_actions(good)).captured[str(STATE)] == "up"
    run(off_actions(good))
    assert get(nginx.url())[0] == 200


class Boom(Step):
    id = StepId(StepKind.COPY, "db1")
    title = "a step that fails"

    def plan(self) -> tuple[Action, ...]:
        return (Shell.line("db1", "exit 3"),)


def journal_for(path: Path, steps: list[Step]) -> Journal:
    plan = {"steps": [step_view(i, s).as_json() for i, s in enumerate(steps, 1)]}
    return Journal.create(path, run_id="r1", runbook_path="rb.yaml", runbook_sha256="x",
                          steps=[(s.key, s.title) for s in steps], plan=plan)


def test_a_failed_step_leaves_the_page_on_and_rollback_takes_it_down(
        haproxy: HAProxy, tmp_path: Path) -> None:
    m, url = map_page(haproxy), haproxy.url(haproxy.page_port)
    steps: list[Step] = [MaintenanceOn(m), Boom(), MaintenanceOff(m)]
    journal = journal_for(tmp_path / "journal.json", steps)
    with pytest.raises(StepFailed):
        Engine(steps, journal, executor(journal)).run()
    assert get(url)[0] == 503  # the page stays on after a failed step
    Engine(steps, journal, executor(journal)).rollback()
    assert get(url) == (200, f"{APP_TEXT}\n")
    assert journal.data.outcome == "rolled back"


@pytest.mark.parametrize("kind", ["haproxy_map", "haproxy_servers"])
def test_a_finished_run_ends_with_the_page_off(haproxy: HAProxy, tmp_path: Path,
                                               kind: str) -> None:
    m = map_page(haproxy) if kind == "haproxy_map" else servers_page(haproxy)
    steps: list[Step] = [MaintenanceOn(m), MaintenanceOff(m)]
    journal = journal_for(tmp_path / "journal.json", steps)
    Engine(steps, journal, executor(journal)).run()  # conformance: checked by conftest
    assert journal.data.outcome == "done" and get(m.probe.url)[0] == 200
    assert map_entries(haproxy) == []
    assert admin_states(haproxy) == {"s1": 0, "s2": 0}  # no server left in maint


# -- the CLI end to end --------------------------------------------------------------------------


def cli_runbook(tmp_path: Path, maintenance: str) -> Path:
    hosts = {name: {"address": "127.0.0.1", "local": True,
                    "mysql": {"host": "127.0.0.1", "port": port, "password_env": "UNSET_PW"},
                    "datadir": f"/nonexistent/{name}", "service": {"start": "true",
                                                                   "stop": "true"}}
             for name, port in (("db1", 9), ("db2", 10))}
    doc = {"version": 1, "name": "maintenance-test", "hosts": hosts, "donor": "db2",
           "recipient": "db1", "primary_after": "db1",
           "replication": {"user": "repl", "password_env": "UNSET_REPL_PW"}}
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + maintenance)
    return path


def test_cli_on_status_off_with_haproxy_map(haproxy: HAProxy, tmp_path: Path) -> None:
    url = haproxy.url(haproxy.page_port)
    rb = cli_runbook(tmp_path, f"""maintenance:
  kind: haproxy_map
  socket: {haproxy.socket}
  map: {haproxy.map}
  key: maint
  probe: {{url: "{url}", expect_text: "{MARKER}", health_url: "{url}health"}}
""")
    on = resync(tmp_path, "maintenance", "on", str(rb), check=True)
    assert f"add map {haproxy.map} maint on" in on.stdout
    assert "[@controller]" in on.stdout and "the maintenance page is on" in on.stdout
    assert get(url)[0] == 503
    again = resync(tmp_path, "maintenance", "on", str(rb), check=True)
    assert "-> else" in again.stdout and len(map_entries(haproxy)) == 1
    status = resync(tmp_path, "maintenance", "status", str(rb), check=True)
    assert "switch: on (maint is in" in status.stdout
    assert "probe: the page is served" in status.stdout
    off = resync(tmp_path, "maintenance", "off", str(rb), check=True)
    assert f"del map {haproxy.map} maint" in off.stdout and "the maintenance page is off" \
        in off.stdout
    assert get(url)[0] == 200
    status = resync(tmp_path, "maintenance", "status", str(rb), check=True)
    assert "switch: off" in status.stdout and "probe: the page is not served" in status.stdout


def test_cli_servers_via_a_runbook_host_and_nginx_flags(haproxy: HAProxy, nginx: Nginx,
                                                        tmp_path: Path) -> None:
    pool = haproxy.url(haproxy.pool_port)
    servers = cli_runbook(tmp_path, f"""maintenance:
  kind: haproxy_servers
  on: db1
  socket: {haproxy.socket}
  backend: web
  probe: {{url: "{pool}", expect_text: "{MARKER}", from: db2}}
""")
    on = resync(tmp_path, "maintenance", "on", str(servers), check=True)
    assert "[db1] echo 'show servers state web'" in on.stdout and "[db2] poll from db2" in on.stdout
    assert get(pool)[0] == 503
    resync(tmp_path, "maintenance", "off", str(servers), check=True)
    assert get(pool)[0] == 200

    flags = cli_runbook(tmp_path, f"""maintenance:
  kind: flag_file
  hosts: [db1, db2]
  path: {nginx.flag}
  probe: {{url: "{nginx.url()}", expect_text: "{MARKER}", health_url: "{nginx.url('/health')}"}}
""")
    resync(tmp_path, "maintenance", "on", str(flags), check=True)
    assert nginx.flag.exists() and get(nginx.url())[0] == 503
    status = resync(tmp_path, "maintenance", "status", str(flags), check=True)
    assert f"switch: flag file {nginx.flag}: db1 on, db2 on" in status.stdout
    resync(tmp_path, "maintenance", "off", str(flags), check=True)
    assert not nginx.flag.exists() and get(nginx.url())[0] == 200


def test_cli_exit_codes(haproxy: HAProxy, tmp_path: Path) -> None:
    url = haproxy.url(haproxy.page_port)
    broken = cli_runbook(tmp_path, f"""maintenance:
  kind: haproxy_map
  socket: {haproxy.root}/no-such.sock
  map: {haproxy.map}
  key: maint
  probe: {{url: "{url}"}}
""")
    failed = resync(tmp_path, "maintenance", "on", str(broken))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED" in failed.stdout and "No such file or directory" in failed.stderr
    assert "resync maintenance status" in failed.stderr
    bad = cli_runbook(tmp_path, "maintenance:\n  kind: haproxy_map\n  probe: {url: 'x'}\n")
    refused = resync(tmp_path, "maintenance", "off", str(bad))
    assert refused.returncode == 2 and "maintenance.socket: required for kind haproxy_map" \
        in refused.stderr


# -- the demo with a web tier --------------------------------------------------------------------


def test_demo_with_web_shows_the_page_on_then_off(tmp_path: Path, sandbox_root: Path) -> None:
    """`resync demo --with-web`: the GET a second sees the page during the run, then 200 again."""
    require("haproxy", "socat")
    proc = resync(tmp_path, "demo", "--yes", "--with-web", "--size-mb", "20",
                  "--dir", str(sandbox_root))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    lines = [line.strip() for line in proc.stdout.splitlines()]
    assert "web: 503 maintenance" in lines, proc.stdout[-3000:]
    assert "web: 200" in lines[lines.index("web: 503 maintenance"):], proc.stdout[-3000:]
    assert "answers 200 again: 'hello from the application'" in proc.stdout
    found = re.search(r"^journal: (\S+\.json)$", proc.stdout, re.M)
    assert found, proc.stdout[-3000:]
    states = step_states(json.loads(Path(found[1]).read_text()))
    assert (states["maintenance-on"], states["maintenance-off"]) == ("done", "done"), states
