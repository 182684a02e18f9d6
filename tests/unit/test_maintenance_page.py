"""The maintenance page: the `maintenance:` schema (errors with file:line:field), the actions
rendered per kind, the idempotent switches, the HTTP probe, the steps and the CLI's bad input."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from support import line_no, runbook_error

from resync.actions.external import HttpAnswer, Outcome
from resync.actions.http import Expect, HttpCheck, fetch_command, parse_fetch
from resync.actions.types import Shell, When, leaves
from resync.cli.commands import main
from resync.model.errors import HostError
from resync.model.keys import Key, StepKind
from resync.model.maintenance import CONTROLLER, MaintenanceSettings
from resync.model.runbook import load_runbook
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal
from resync.steps.maintenance import (
    PAGE,
    PROBE_SEES_PAGE,
    SERVERS,
    STATE,
    MaintenanceOff,
    MaintenanceOn,
    flag_state,
    off_actions,
    on_actions,
    status_actions,
    switch_actions,
)
from resync.testing.fakes import FakeClock
from resync.transport.local import CommandResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "runbooks" / "rebuild-old-primary.yaml"
SOCKET = "/run/haproxy/admin.sock"
MAP = "/etc/haproxy/maintenance.map"
SILENT = "awk 'NF {print \"haproxy: \" $0; bad = 1} END {exit bad}'"
PROBE = {"url": "http://shop.example.internal/", "expect_text": "maintenance",
         "health_url": "http://shop.example.internal/health"}


def settings(kind: str, **extra: Any) -> MaintenanceSettings:
    return MaintenanceSettings.model_validate({"kind": kind, **extra,
                                               "probe": {**PROBE, **extra.pop("probe", {})}})


MAP_PAGE = {"on": "lb1", "socket": SOCKET, "map": MAP, "key": "shop.example.internal"}


def texts(actions: Any, captured: dict[str, Any] | None = None) -> list[str]:
    return [p.action.render(captured) for p in leaves(actions)]


# -- the schema ----------------------------------------------------------------------------------

SECTION = """maintenance:
  kind: haproxy_map
  on: db1
  socket: /run/haproxy/admin.sock
  map: /etc/haproxy/maintenance.map
  key: shop.example.internal
  probe: {url: "http://shop.example.internal/", expect_text: maintenance,
          health_url: "http://shop.example.internal/health"}
"""


def runbook(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "runbook.yaml"
    path.write_text(EXAMPLE.read_text() + section)
    return path


def errors(tmp_path: Path, section: str) -> tuple[Path, str]:
    path = runbook(tmp_path, section)
    return path, str(runbook_error(path))


def line_of(path: Path, needle: str) -> int:
    return line_no(path.read_text(), needle)


def test_a_runbook_without_the_section_has_no_maintenance() -> None:
    assert load_runbook(EXAMPLE).model.maintenance is None


def test_the_roadmap_section_loads_with_an_unquoted_yaml_on_key(tmp_path: Path) -> None:
    m = load_runbook(runbook(tmp_path, SECTION)).model.maintenance
    assert m is not None  # `on:` is the boolean true to YAML 1.1: read as the field `on`
    assert (m.kind, m.on, m.switch_host, m.probe_host) == ("haproxy_map", "db1", "db1", CONTROLLER)
    assert (m.probe.expect_status, m.probe.timeout, m.sudo) == (503, 5.0, True)


@pytest.mark.parametrize("section", [
    "maintenance:\n  kind: haproxy_servers\n  socket: /run/haproxy/admin.sock\n  backend: web\n"
    "  probe: {url: 'http://a/', from: db2}\n",
    "maintenance:\n  kind: flag_file\n  hosts: [db1, db2]\n  path: /var/www/maintenance.flag\n"
    "  probe: {url: 'http://a/'}\n",
    "maintenance:\n  kind: command\n  on_cmd: maint on\n  off_cmd: maint off\n"
    "  probe: {url: 'https://a/', expect_status: 200, expect_text: down}\n",
])
def test_each_kind_loads(tmp_path: Path, section: str) -> None:
    assert load_runbook(runbook(tmp_path, section)).model.maintenance is not None


def test_a_missing_field_names_the_section_line(tmp_path: Path) -> None:
    path, message = errors(tmp_path, SECTION.replace("  key: shop.example.internal\n", ""))
    assert f"{path}:{line_of(path, 'maintenance:')}: maintenance.key: required for kind " \
           "haproxy_map" in message


def test_a_field_of_another_kind_is_refused_at_its_line(tmp_path: Path) -> None:
    path, message = errors(tmp_path, SECTION + "  backend: web\n")
    assert f"{path}:{line_of(path, 'backend: web')}: maintenance.backend: not used by kind " \
           "haproxy_map" in message


def test_on_is_not_used_by_flag_files(tmp_path: Path) -> None:
    section = ("maintenance:\n  kind: flag_file\n  on: db1\n  hosts: [db1]\n  path: /f\n"
               "  probe: {url: 'http://a/'}\n")
    path, message = errors(tmp_path, section)
    assert f"{path}:{line_of(path, '  on: db1')}: maintenance.on: not used by kind flag_file" \
           in message


def test_unknown_hosts_are_named_with_their_line(tmp_path: Path) -> None:
    section = ("maintenance:\n  kind: flag_file\n  hosts:\n    - db1\n    - web9\n  path: /f\n"
               "  probe:\n    url: 'http://a/'\n    from: lb7\n")
    path, message = errors(tmp_path, section)
    assert f"{path}:{line_of(path, '- web9')}: maintenance.hosts.1: 'web9' is not one of the " \
           "hosts (db1, db2)" in message
    assert f"{path}:{line_of(path, 'from: lb7')}: maintenance.probe.from: 'lb7' is not one" \
           in message
    path, message = errors(tmp_path, SECTION.replace("on: db1", "on: lb1"))
    assert f"{path}:{line_of(path, 'on: lb1')}: maintenance.on: 'lb1' is not one" in message


@pytest.mark.parametrize(("old", "new", "field"), [
    ("kind: haproxy_map", "kind: haproxy", "maintenance.kind"),
    ("socket: /run/haproxy/admin.sock", "socket: '/run/ha proxy.sock'", "maintenance.socket"),
    ("socket: /run/haproxy/admin.sock", "socket: run/admin.sock", "maintenance.socket"),
    ("key: shop.example.internal", "key: 'shop;shutdown sessions'", "maintenance.key"),
    ("map: /etc/haproxy/maintenance.map", "map: \"/etc/x'y.map\"", "maintenance.map"),
    ('url: "http://shop.example.internal/"', 'url: "ftp://x/"', "maintenance.probe.url"),
    ("expect_text: maintenance,", "expect_status: 600,", "maintenance.probe.expect_status"),
    ("expect_text: maintenance,", "colour: red,", "maintenance.probe.colour"),
])
def test_bad_values_name_file_line_and_field(tmp_path: Path, old: str, new: str,
                                             field: str) -> None:
    path, message = errors(tmp_path, SECTION.replace(old, new))
    assert f"{path}:{line_of(path, new)}: {field}" in message, message


def test_a_2xx_page_needs_its_marker_text(tmp_path: Path) -> None:
    _, message = errors(tmp_path, SECTION.replace("expect_text: maintenance,",
                                                  "expect_status: 200,"))
    assert "maintenance.probe: expect_status 200 needs expect_text" in message


def test_the_controller_name_cannot_be_a_runbook_host(tmp_path: Path) -> None:
    _, message = errors(tmp_path, SECTION.replace("on: db1", f"on: '{CONTROLLER}'"))
    assert "maintenance.on: '@controller' is not one of the hosts" in message


# -- the actions, rendered -----------------------------------------------------------------------


def test_haproxy_map_adds_only_when_absent_and_removes_only_when_present() -> None:
    m = settings("haproxy_map", **MAP_PAGE)
    show = (f"echo 'show map {MAP}' | socat stdio UNIX-CONNECT:{SOCKET} | awk -v "
            "key=shop.example.internal 'NF && $1 !~ /^0x/ {print \"haproxy: \" $0; bad = 1} "
            "$2 == key {found = 1} END {if (bad) exit 1; print (found ? \"on\" : \"off\")}'")
    state, when = switch_actions(m, True)
    assert isinstance(state, Shell) and isinstance(when, When)
    assert (state.host, state.render(), state.into, state.privileged) == ("lb1", show, PAGE, True)
    assert when.render() == "when <maintenance.page> = 'off'"
    assert texts(when.then) == [f"echo 'add map {MAP} shop.example.internal on' | socat stdio "
                                f"UNIX-CONNECT:{SOCKET} | {SILENT}"]
    _, when = switch_actions(m, False)
    assert isinstance(when, When) and when.render() == "when <maintenance.page> = 'on'"
    assert texts(when.then) == [f"echo 'del map {MAP} shop.example.internal' | socat stdio "
                                f"UNIX-CONNECT:{SOCKET} | {SILENT}"]


def test_haproxy_servers_lists_the_backend_then_sets_each_server() -> None:
    m = settings("haproxy_servers", socket=SOCKET, backend="web")
    listing, loop = switch_actions(m, True)
    assert isinstance(listing, Shell) and listing.into == SERVERS["maint"]
    assert listing.host == CONTROLLER
    assert listing.render().startswith(f"echo 'show servers state web' | socat stdio "
                                       f"UNIX-CONNECT:{SOCKET} | awk -v be=web ")
    filled = loop.render({"maintenance.servers.maint": "s1\ns2"})
    assert filled == ("printf '%s\\n' 's1\ns2' | while read -r srv; do echo \"set server "
                      f"web/$srv state maint\" | socat stdio UNIX-CONNECT:{SOCKET}; done | {SILENT}")
    listing, loop = switch_actions(m, False)
    assert isinstance(listing, Shell) and listing.into == SERVERS["ready"]
    assert "state ready" in loop.render()  # type: ignore[union-attr]


def test_flag_files_are_touched_and_removed_on_every_host() -> None:
    m = settings("flag_file", hosts=["web1", "web2"], path="/var/www/maintenance.flag")
    on = switch_actions(m, True)
    assert [(a.host, a.render()) for a in on if isinstance(a, Shell)] == [
        ("web1", "touch /var/www/maintenance.flag"), ("web2", "touch /var/www/maintenance.flag")]
    assert texts(switch_actions(m, False)) == ["rm -f /var/www/maintenance.flag"] * 2


def test_commands_run_as_written_with_or_without_sudo() -> None:
    m = settings("command", on_cmd="/usr/local/bin/page up", off_cmd="/usr/local/bin/page down",
                 sudo=False)
    (up,) = switch_actions(m, True)
    (down,) = switch_actions(m, False)
    assert isinstance(up, Shell) and isinstance(down, Shell)
    assert (up.render(), up.privileged, down.render()) == ("/usr/local/bin/page up", False,
                                                           "/usr/local/bin/page down")


def test_the_probes_render_what_they_check() -> None:
    m = settings("haproxy_map", **MAP_PAGE)
    assert on_actions(m)[-1].render() == (  # type: ignore[union-attr]
        "poll from this machine: GET http://shop.example.internal/ answers 503 containing "
        "'maintenance' and GET http://shop.example.internal/health answers 200 (every 0.5s, at "
        "most 5s)")
    assert off_actions(m)[-1].render() == (  # type: ignore[union-attr]
        "poll from this machine: GET http://shop.example.internal/ answers 2xx/3xx (every 0.5s, "
        "at most 5s)")
    far = settings("haproxy_map", **MAP_PAGE, probe={"from": "web1", "timeout": 2,
                                                     "expect_status": 200})
    probe = on_actions(far)[-1]
    assert isinstance(probe, HttpCheck) and probe.remote and probe.host == "web1"
    assert probe.render().startswith("poll from web1 (python3 urllib): GET http://shop.example."
                                     "internal/ answers 200 containing 'maintenance'")
    assert off_actions(far)[-1].render() == (  # type: ignore[union-attr]
        "poll from web1 (python3 urllib): GET http://shop.example.internal/ answers 2xx/3xx, not "
        "the page (200 containing 'maintenance') (every 0.5s, at most 2s)")


def test_status_reads_only() -> None:
    m = settings("flag_file", hosts=["web1", "web2"], path="/f")
    assert texts(status_actions(m))[:2] == ["test -f /f && echo on || echo off"] * 2
    assert [a.outputs() for a in status_actions(m)] == [
        (flag_state("web1"),), (flag_state("web2"),), (PROBE_SEES_PAGE,)]
    servers = texts(status_actions(settings("haproxy_servers", socket=SOCKET, backend="web")))
    assert "show servers state web" in servers[0] and "set server" not in " ".join(servers)
    m = settings("command", on_cmd="a", off_cmd="b", status_cmd="c")
    (read, look) = status_actions(m)
    assert isinstance(read, Shell) and (read.render(), read.check, read.into) == ("c", False, STATE)
    assert isinstance(look, HttpCheck) and look.look_only
    assert len(status_actions(settings("command", on_cmd="a", off_cmd="b"))) == 1


def test_the_steps_undo_each_other() -> None:
    m = settings("haproxy_map", **MAP_PAGE)
    on, off = MaintenanceOn(m), MaintenanceOff(m)
    assert (on.key, off.key) == (StepKind.MAINTENANCE_ON.value, StepKind.MAINTENANCE_OFF.value)
    assert on.plan() == off.undo_plan() == on_actions(m)
    assert off.plan() == on.undo_plan() == off_actions(m)
    assert on.hosts == ("lb1", CONTROLLER)
    assert "a reload re-reads" in on.why and "the page stays on" in on.why
    servers = MaintenanceOn(settings("haproxy_servers", socket=SOCKET, backend="web"))
    assert "runtime state is lost on reload unless server-state-file is configured" in servers.why


# -- running them (fake hosts) -------------------------------------------------------------------


@dataclass
class Hosts:
    """Scripted command outputs by a substring of the command; everything run is recorded."""

    outputs: dict[str, str] = field(default_factory=dict)
    ran: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, name: str) -> Any:
        hosts = self

        class Host:
            def run(self, command: str, **kwargs: Any) -> CommandResult:
                hosts.ran.append((name, command))
                out = next((v for k, v in hosts.outputs.items() if k in command), "")
                return CommandResult(name, command, 0, out, "")

            def close(self) -> None:
                pass

        return Host()


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, HttpAnswer]]:
    replies: dict[str, HttpAnswer] = {}
    monkeypatch.setattr("resync.run.executor.http_get", lambda url, timeout: replies[url])
    yield replies


def run(actions: Any, hosts: Hosts) -> Executor:
    def refuse(name: str) -> Any:
        raise AssertionError("no MySQL here")

    exe = Executor(MemoryJournal(), hosts=hosts, connect=refuse, clock=FakeClock())
    exe.run(actions)
    return exe


PAGE_ON = {"http://shop.example.internal/": HttpAnswer(503, "<h1>maintenance</h1>"),
           "http://shop.example.internal/health": HttpAnswer(200, "ok")}


@pytest.mark.parametrize(("listed", "sends_add"), [("off", True), ("on", False)])
def test_page_on_adds_the_entry_only_when_absent(answers: dict[str, HttpAnswer], listed: str,
                                                 sends_add: bool) -> None:
    answers.update(PAGE_ON)
    hosts = Hosts({"show map": listed})
    exe = run(on_actions(settings("haproxy_map", **MAP_PAGE)), hosts)
    assert any("add map" in c for _, c in hosts.ran) is sends_add
    when = next(r for r in exe.journal.data.commands if r.kind == "when")
    assert when.result == ("then" if sends_add else "else")
    assert exe.journal.data.commands[-1].kind == "http" and exe.journal.data.commands[-1].ok


@pytest.mark.parametrize(("listed", "sends_del"), [("on", True), ("off", False)])
def test_page_off_removes_the_entry_only_when_present(answers: dict[str, HttpAnswer],
                                                      listed: str, sends_del: bool) -> None:
    answers["http://shop.example.internal/"] = HttpAnswer(200, "shop")
    hosts = Hosts({"show map": listed})
    run(off_actions(settings("haproxy_map", **MAP_PAGE)), hosts)
    assert any("del map" in c for _, c in hosts.ran) is sends_del


def test_the_servers_listed_are_the_servers_set(answers: dict[str, HttpAnswer]) -> None:
    answers.update(PAGE_ON)
    hosts = Hosts({"show servers state": "s1\ns2\n"})
    exe = run(on_actions(settings("haproxy_servers", socket=SOCKET, backend="web")), hosts)
    assert exe.captured["maintenance.servers.maint"] == "s1\ns2"
    assert "printf '%s\\n' 's1\ns2' | while read" in hosts.ran[1][1]


def test_a_failed_switch_stops_before_the_probe(answers: dict[str, HttpAnswer]) -> None:
    class Failing(Hosts):
        def __call__(self, name: str) -> Any:
            host = super().__call__(name)
            host.run = lambda command, **kw: CommandResult(name, command, 1, "haproxy: No such "
                                                           "server.", "")
            return host

    with pytest.raises(HostError, match="No such server"):
        run(on_actions(settings("haproxy_servers", socket=SOCKET, backend="web")), Failing())


# -- the HTTP check ------------------------------------------------------------------------------


@dataclass
class Ctx:
    """An ExternalContext with scripted GETs (a list per URL: one answer per look)."""

    replies: dict[str, list[HttpAnswer]]
    shell_out: Callable[[str, str], CommandResult] | None = None
    clock: FakeClock = field(default_factory=FakeClock)
    captured: dict[str, Any] = field(default_factory=dict)
    gets: int = 0

    def aws(self, service: str) -> Any:
        raise AssertionError

    def http_get(self, url: str, timeout: float) -> HttpAnswer:
        self.gets += 1
        queue = self.replies[url]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def shell(self, host: str, command: str, *, privileged: bool = False,
              timeout: float | None = None) -> CommandResult:
        assert self.shell_out is not None
        return self.shell_out(host, command)

    def progress(self, done: int, total: int | None, label: str) -> None:
        pass


def check(*expects: Expect, **kw: Any) -> HttpCheck:
    return HttpCheck(CONTROLLER, expects, **{"timeout": 5.0, **kw})


def test_the_check_polls_until_the_page_is_seen() -> None:
    ctx = Ctx({"u": [HttpAnswer(200, "shop"), HttpAnswer(200, "shop"), HttpAnswer(503, "maint")],
               "h": [HttpAnswer(200, "ok")]})
    outcome = check(Expect("u", 503, "maint"), Expect("h", 200)).perform(ctx)
    assert outcome.ok and outcome.detail == "3 look(s); last: u: 503, with 'maint'; h: 200"
    assert ctx.clock.t == 1.0


def test_the_check_fails_at_its_deadline_with_the_last_answers() -> None:
    ctx = Ctx({"u": [HttpAnswer(503, "maint")], "h": [HttpAnswer(503, "maint")]})
    outcome = check(Expect("u", 503, "maint"), Expect("h", 200), timeout=2,
                    failure="health is not exempt").perform(ctx)
    assert not outcome.ok and ctx.clock.t == 2.0
    assert outcome.error == "[@controller] health is not exempt: u: 503, with 'maint'; h: 503"


def test_looking_once_never_fails_and_captures_the_verdict() -> None:
    ctx = Ctx({"u": [HttpAnswer(None, "", "Connection refused")]})
    outcome = check(Expect("u", 503), look_only=True, into=Key("k")).perform(ctx)
    assert outcome == Outcome(detail="u: no answer (Connection refused)", values={Key("k"): 0})
    assert ctx.gets == 1


@pytest.mark.parametrize(("answer", "met"), [
    (HttpAnswer(200, "shop"), True), (HttpAnswer(302, ""), True), (HttpAnswer(503, "x"), False),
    (HttpAnswer(200, "we are down"), False), (HttpAnswer(None, ""), False),
])
def test_page_off_means_2xx_3xx_and_not_the_page(answer: HttpAnswer, met: bool) -> None:
    assert Expect("u", unlike=(200, "down")).met(answer) is met


def test_a_probe_from_a_host_runs_python3_there() -> None:
    seen: list[tuple[str, str]] = []

    def shell(host: str, command: str) -> CommandResult:
        seen.append((host, command))
        return CommandResult(host, command, 0, "503\n<h1>maint</h1>", "")

    ctx = Ctx({}, shell_out=shell)
    outcome = HttpCheck("web1", (Expect("http://a/", 503, "maint"),), remote=True).perform(ctx)
    assert outcome.ok and seen == [("web1", fetch_command("http://a/", 3.0))]
    assert seen[0][1].startswith("python3 -c 'import sys, urllib.request")
    assert seen[0][1].endswith(" http://a/ 3")


def test_fetch_output_parsing() -> None:
    assert parse_fetch(0, "200\nbody\nmore") == HttpAnswer(200, "body\nmore")
    assert parse_fetch(0, "0\nConnection refused") == HttpAnswer(None, "", "Connection refused")
    assert parse_fetch(127, "python3: not found").status is None


# -- the CLI's bad input --------------------------------------------------------------------------


def test_cli_commands_are_listed() -> None:
    result = CliRunner().invoke(main, ["maintenance", "--help"])
    assert result.exit_code == 0
    assert all(c in result.output for c in ("on", "off", "status"))


@pytest.mark.parametrize("command", ["on", "off", "status"])
def test_cli_without_a_maintenance_section_is_bad_input(command: str) -> None:
    result = CliRunner().invoke(main, ["maintenance", command, str(EXAMPLE)])
    assert result.exit_code == 2
    assert "has no `maintenance:` section" in result.output


def test_cli_with_an_invalid_section_is_bad_input(tmp_path: Path) -> None:
    path = runbook(tmp_path, SECTION.replace("kind: haproxy_map", "kind: varnish"))
    result = CliRunner().invoke(main, ["maintenance", "on", str(path)])
    assert result.exit_code == 2 and "maintenance.kind" in result.output

