"""HAProxy membership through the runtime API: `socat` on the admin socket, on the host that runs
HAProxy (this machine, or a host reached over SSH).

deregister sets the server to `drain` (no new sessions; current ones go on); wait_drained polls
`show stat` until the server's current sessions (scur) are 0, or the member's `timeout`, then
sets it to `maint`; register sets it `ready` and wait_healthy polls `show servers state` until
it is up and neither in maintenance nor draining. Runtime states are lost on a reload unless
HAProxy keeps a `server-state-file`.
"""

from __future__ import annotations

from dataclasses import dataclass

from resync.actions.external import External, ExternalContext, Outcome
from resync.actions.quoting import q
from resync.actions.types import Leaf, Template
from resync.lb.base import LOCAL_HOST, Member, Target
from resync.lb.waits import countdown
from resync.model.errors import ResyncError
from resync.model.keys import Key
from resync.model.lb import HaproxyEntry

MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced, inherited, config, resolution, hostname
DRAIN = 0x08 | 0x10  # forced, inherited
OP_STATES = {"0": "down", "1": "starting", "2": "in_service", "3": "stopping"}
INTERVAL = 1.0


def socket_command(socket: str, command: str) -> str:
    return f"echo {q(command)} | socat stdio UNIX-CONNECT:{q(socket)}"


def _table(text: str, sep: str | None) -> list[dict[str, str]]:
    """Rows of a runtime-API listing whose header line starts with '# '."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line[2:] for line in lines if line.startswith("# ")), None)
    if header is None:
        return []
    names = header.split(sep)
    return [dict(zip(names, line.split(sep), strict=False))
            for line in lines if not line.startswith("#") and len(line.split(sep)) > 2]


def server_state(text: str, backend: str, server: str) -> tuple[str, str]:
    """(state, said) from `show servers state BACKEND`."""
    for row in _table(text, None):
        if row.get("be_name") == backend and row.get("srv_name") == server:
            admin = int(row.get("srv_admin_state", "0"))
            op = OP_STATES.get(row.get("srv_op_state", ""), "unknown")
            said = f"op_state {row.get('srv_op_state')} admin_state {admin:#x}"
            if admin & MAINT:
                return "maint", said
            if admin & DRAIN:
                return "draining", said
            return op, said
    return "absent", f"no server {server} in backend {backend}"


def current_sessions(text: str, backend: str, server: str) -> int | None:
    """scur of the server in `show stat` (None: not listed)."""
    for row in _table(text, ","):
        if row.get("pxname") == backend and row.get("svname") == server:
            return int(row.get("scur") or 0)
    return None


def _run(ctx: ExternalContext, host: str, socket: str, command: str) -> str:
    line = socket_command(socket, command)
    result = ctx.shell(host, line, privileged=True, timeout=30)
    if not result.ok:
        raise ResyncError(f"[{host}] {line}: exited {result.exit_code}: {result.tail().strip()}")
    return result.stdout


@dataclass(frozen=True, kw_only=True)
class HaproxyCommand(External):
    """One runtime-API command; `set ...` commands answer nothing when they worked."""

    host: str
    socket: str
    command: str
    into: Key | None = None  # `show servers state`: capture the server's state here
    backend: str = ""
    server: str = ""
    kind = "haproxy"

    def template(self) -> Template:
        return (socket_command(self.socket, self.command),)

    def perform(self, ctx: ExternalContext) -> Outcome:
        out = _run(ctx, self.host, self.socket, self.command)
        if self.into is not None:
            state, said = server_state(out, self.backend, self.server)
            return Outcome(detail=said, values={self.into: state})
        if out.strip():  # e.g. "No such server." / "No such backend."
            return Outcome(ok=False, detail=out.strip(),
                           error=f"[{self.host}] haproxy {self.command}: {out.strip()}")
        return Outcome(detail="done")


@dataclass(frozen=True, kw_only=True)
class HaproxyWait(External):
    host: str
    socket: str
    backend: str
    server: str
    timeout: float
    healthy: bool
    kind = "wait"

    @property
    def _command(self) -> str:
        return f"show servers state {self.backend}" if self.healthy else "show stat"

    def template(self) -> Template:
        until = ("up and neither in maintenance nor draining" if self.healthy else
                 f"{self.backend}/{self.server} has no current session (scur 0)")
        return (f"poll {socket_command(self.socket, self._command)} until {until} (every "
                f"{INTERVAL:g}s, at most {self.timeout:g}s)",)

    def perform(self, ctx: ExternalContext) -> Outcome:
        def look() -> tuple[bool, str]:
            out = _run(ctx, self.host, self.socket, self._command)
            if self.healthy:
                state, said = server_state(out, self.backend, self.server)
                return state == "in_service", f"{state} ({said})"
            sessions = current_sessions(out, self.backend, self.server)
            if sessions is None:
                raise ResyncError(f"[{self.host}] haproxy: no server {self.server} in backend "
                                  f"{self.backend}")
            return sessions == 0, f"{sessions} session(s)"

        label = f"haproxy {self.backend}/{self.server}: {'up' if self.healthy else 'drained'}"
        waited = countdown(ctx, label=label, timeout=self.timeout, interval=INTERVAL, look=look)
        if waited.done:
            return Outcome(detail=waited.describe())
        if self.healthy:
            return Outcome(ok=False, detail=waited.describe(),
                           error=f"{label}: not after {self.timeout:g}s ({waited.seen})")
        return Outcome(detail=f"{waited.describe()}; timeout ({self.timeout:g}s): {waited.seen} "
                              "still open go on until they end")


class HaproxyMember(Member):
    kind = "haproxy"

    def __init__(self, entry: HaproxyEntry, target: Target, prefix: str,
                 default_host: str = LOCAL_HOST) -> None:
        super().__init__(target, prefix)
        self.entry = entry
        self.host = entry.host or default_host

    @property
    def label(self) -> str:
        return f"haproxy {self.entry.backend}/{self.entry.server}"

    def _set(self, state: str) -> HaproxyCommand:
        e = self.entry
        return HaproxyCommand(host=self.host, socket=e.socket,
                              command=f"set server {e.backend}/{e.server} state {state}")

    def _wait(self, healthy: bool) -> HaproxyWait:
        e = self.entry
        return HaproxyWait(host=self.host, socket=e.socket, backend=e.backend, server=e.server,
                           timeout=e.timeout, healthy=healthy)

    def status(self) -> list[Leaf]:
        e = self.entry
        return [HaproxyCommand(host=self.host, socket=e.socket,
                               command=f"show servers state {e.backend}", into=self.state_key,
                               backend=e.backend, server=e.server)]

    def register(self) -> list[Leaf]:
        return [self._set("ready")]

    def deregister(self) -> list[Leaf]:
        return [self._set("drain")]

    def wait_drained(self) -> list[Leaf]:
        return [self._wait(healthy=False), self._set("maint")]

    def wait_healthy(self) -> list[Leaf]:
        return [self._wait(healthy=True)]
