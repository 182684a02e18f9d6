"""The maintenance page: on right after preflight (and the window gate), off at the very end.

The runbook's `maintenance:` section says how it is switched (an entry of an HAProxy map read by
an `http-request return status 503 ... if { ...,map(...) -m found }` rule, the servers of an
HAProxy backend set to maint, a flag file the web servers test, or the operator's own commands)
and how it is seen: after each switch an HTTP probe confirms it (page on: the URL answers the
page and the health URL still answers 200; page off: the URL answers 2xx/3xx again).

Both switches are safe to repeat: the map entry is added only when absent and removed only when
present, a server already in maint stays in maint, `touch` and `rm -f` are idempotent.
"""

from __future__ import annotations

from typing import TypeVar

from resync.actions import haproxy
from resync.actions.conditions import Equals
from resync.actions.http import Expect, HttpCheck
from resync.actions.quoting import q
from resync.actions.types import Action, Ref, Shell, When
from resync.model.errors import ResyncError
from resync.model.keys import Key, StepId, StepKind
from resync.model.maintenance import CONTROLLER, MaintenanceSettings
from resync.steps.base import Step

T = TypeVar("T")

PAGE = Key("maintenance.page")  # haproxy_map: whether the key was in the map (on/off)
# haproxy_servers: the backend's servers (one a line) as listed before setting them maint/ready;
# one name per direction, so that a run's on and off steps each journal the list they used
SERVERS = {"maint": Key("maintenance.servers.maint"), "ready": Key("maintenance.servers.ready")}
STATE = Key("maintenance.state")  # status: what the switch says (map entry, servers, status_cmd)
PROBE_SEES_PAGE = Key("maintenance.probe_sees_page")  # status: 1 when the probe sees the page
COMMAND_TIMEOUT = 300.0  # seconds on_cmd/off_cmd/status_cmd may take


def flag_state(host: str) -> Key:
    """status of a flag_file page: on/off per web host."""
    return Key(f"maintenance.flag.{host}")


def _need(value: T | None, name: str) -> T:
    if value is None:  # the runbook schema requires it for the kind
        raise ResyncError(f"maintenance.{name} is not set in the runbook")
    return value


def where(host: str) -> str:
    return "this machine" if host == CONTROLLER else host


def describe(m: MaintenanceSettings) -> str:
    """The switch in a few words (step titles, CLI)."""
    if m.kind == "haproxy_map":
        return f"HAProxy map {m.map}, key {m.key}, via {where(m.switch_host)}"
    if m.kind == "haproxy_servers":
        return f"HAProxy backend {m.backend}'s servers, via {where(m.switch_host)}"
    if m.kind == "flag_file":
        return f"flag file {m.path} on {', '.join(_need(m.hosts, 'hosts'))}"
    return f"the runbook's commands on {where(m.switch_host)}"


def touched_hosts(m: MaintenanceSettings) -> tuple[str, ...]:
    hosts = list(_need(m.hosts, "hosts")) if m.kind == "flag_file" else [m.switch_host]
    return tuple(dict.fromkeys([*hosts, m.probe_host]))


# -- actions -----------------------------------------------------------------------------------


def switch_actions(m: MaintenanceSettings, on: bool) -> tuple[Action, ...]:
    """The actions that put the page on (or take it off), without the probe."""
    host, sudo = m.switch_host, m.sudo
    if m.kind == "haproxy_map":
        socket, name, key = _need(m.socket, "socket"), _need(m.map, "map"), _need(m.key, "key")
        state = haproxy.map_entry_state(host, socket, name, key, PAGE, privileged=sudo)
        if on:
            return (state, When(Equals(PAGE, "off"),
                                (haproxy.add_map(host, socket, name, key, privileged=sudo),),
                                otherwise_note=f"{key} is in {name} already: nothing to add"))
        return (state, When(Equals(PAGE, "on"),
                            (haproxy.del_map(host, socket, name, key, privileged=sudo),),
                            otherwise_note=f"{key} is not in {name}: nothing to remove"))
    if m.kind == "haproxy_servers":
        socket, backend = _need(m.socket, "socket"), _need(m.backend, "backend")
        target = "maint" if on else "ready"
        return (haproxy.backend_servers(host, socket, backend, SERVERS[target], privileged=sudo),
                haproxy.set_servers_state(host, socket, backend, Ref(SERVERS[target]), target,
                                          privileged=sudo))
    if m.kind == "flag_file":
        path = q(_need(m.path, "path"))
        return tuple(Shell.line(h, f"touch {path}" if on else f"rm -f {path}", privileged=sudo,
                                timeout=COMMAND_TIMEOUT) for h in _need(m.hosts, "hosts"))
    command = _need(m.on_cmd, "on_cmd") if on else _need(m.off_cmd, "off_cmd")
    return (Shell.line(host, command, privileged=sudo, timeout=COMMAND_TIMEOUT),)


def page_expectations(m: MaintenanceSettings) -> tuple[Expect, ...]:
    p = m.probe
    page = Expect(p.url, p.expect_status, p.expect_text)
    return (page, Expect(p.health_url, 200)) if p.health_url else (page,)


def probe_on(m: MaintenanceSettings) -> HttpCheck:
    """The page is served (status and marker text) and the health URL is still exempt."""
    return HttpCheck(m.probe_host, page_expectations(m), m.probe.timeout,
                     remote=m.probe.from_ is not None,
                     failure="the maintenance page is not served as expected")


def probe_off(m: MaintenanceSettings) -> HttpCheck:
    """The application answers again (2xx/3xx, and not the page)."""
    p = m.probe
    return HttpCheck(m.probe_host, (Expect(p.url, unlike=(p.expect_status, p.expect_text)),),
                     p.timeout, remote=p.from_ is not None,
                     failure="the application does not answer with the maintenance page off")


def on_actions(m: MaintenanceSettings) -> tuple[Action, ...]:
    return (*switch_actions(m, True), probe_on(m))


def off_actions(m: MaintenanceSettings) -> tuple[Action, ...]:
    return (*switch_actions(m, False), probe_off(m))


def status_actions(m: MaintenanceSettings) -> tuple[Action, ...]:
    """Read-only: what the switch says, then one look by the probe (for `maintenance status`)."""
    host, sudo = m.switch_host, m.sudo
    reads: tuple[Action, ...]
    if m.kind == "haproxy_map":
        reads = (haproxy.map_entry_state(host, _need(m.socket, "socket"), _need(m.map, "map"),
                                         _need(m.key, "key"), STATE, privileged=sudo),)
    elif m.kind == "haproxy_servers":
        reads = (haproxy.servers_admin_state(host, _need(m.socket, "socket"),
                                             _need(m.backend, "backend"), STATE,
                                             privileged=sudo),)
    elif m.kind == "flag_file":
        path = q(_need(m.path, "path"))
        reads = tuple(Shell.line(h, f"test -f {path} && echo on || echo off", privileged=sudo,
                                 timeout=COMMAND_TIMEOUT, into=flag_state(h))
                      for h in _need(m.hosts, "hosts"))
    elif m.status_cmd:
        reads = (Shell.line(host, m.status_cmd, privileged=sudo, timeout=COMMAND_TIMEOUT,
                            check=False, into=STATE),)
    else:
        reads = ()
    look = HttpCheck(m.probe_host, page_expectations(m), 0, remote=m.probe.from_ is not None,
                     look_only=True, into=PROBE_SEES_PAGE)
    return (*reads, look)


# -- steps -------------------------------------------------------------------------------------


def _why(m: MaintenanceSettings, on: bool) -> str:
    p = m.probe
    if m.kind == "haproxy_map":
        how = (f"`{'add' if on else 'del'} map` over HAProxy's runtime API ({m.socket}), no "
               f"reload; the entry lives in HAProxy's memory only: a reload re-reads {m.map} "
               "from its file and drops it")
    elif m.kind == "haproxy_servers":
        how = (f"every server of backend {m.backend} set to {'maint' if on else 'ready'} over "
               f"HAProxy's runtime API ({m.socket}), no reload; runtime state is lost on reload "
               "unless server-state-file is configured (and saved before the reload)")
    elif m.kind == "flag_file":
        how = (f"{'touch' if on else 'rm -f'} {m.path} on {', '.join(_need(m.hosts, 'hosts'))} "
               "(the web servers serve the page while it exists)")
    else:
        how = f"the runbook's {'on_cmd' if on else 'off_cmd'}"
    health = f"; {p.health_url} must still answer 200" if p.health_url else ""
    text = f" containing {p.expect_text!r}" if p.expect_text else ""
    if on:
        return (f"the page goes up before anything changes: {how}; then {p.url} must answer "
                f"{p.expect_status}{text}{health}. If a later step fails, the page stays on: "
                "`resync rollback` or `resync maintenance off RUNBOOK` takes it down")
    return f"the run is over: {how}; then {p.url} must answer 2xx/3xx again"


class MaintenanceOn(Step):
    """Put the maintenance page up; its undo takes it down (a rollback ends with the page off)."""

    def __init__(self, settings: MaintenanceSettings) -> None:
        self.settings = settings
        self.id = StepId(StepKind.MAINTENANCE_ON)
        self.title = f"Maintenance page on ({describe(settings)})"
        self.hosts = touched_hosts(settings)
        self.why = _why(settings, True)

    def plan(self) -> tuple[Action, ...]:
        return on_actions(self.settings)

    def undo_plan(self) -> tuple[Action, ...]:
        return off_actions(self.settings)


class MaintenanceOff(Step):
    """Take the maintenance page down; its undo puts it back up (rolling back a finished run)."""

    def __init__(self, settings: MaintenanceSettings) -> None:
        self.settings = settings
        self.id = StepId(StepKind.MAINTENANCE_OFF)
        self.title = f"Maintenance page off ({describe(settings)})"
        self.hosts = touched_hosts(settings)
        self.why = _why(settings, False)

    def plan(self) -> tuple[Action, ...]:
        return off_actions(self.settings)

    def undo_plan(self) -> tuple[Action, ...]:
        return on_actions(self.settings)
