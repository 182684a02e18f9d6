"""HAProxy's runtime API over its admin socket (`stats socket ... level admin`), as Shell actions.

Each command goes through `socat` exactly as an operator would type it:
`echo 'add map /etc/haproxy/maintenance.map maint on' | socat stdio UNIX-CONNECT:/run/haproxy/admin.sock`.
The runtime API answers a change with an empty line and an error with a sentence, while socat
exits 0 either way: the answer is checked (any text fails the action, the text is its output).
Runtime changes live in HAProxy's memory only: a reload re-reads the map files, and the servers'
states survive it only with `server-state-file` (saved before the reload).

Names (socket, map, key, backend, server) must be single words without quotes or `;`: the
runbook schema refuses anything else, so they are written unquoted into the commands.
"""

from __future__ import annotations

from resync.actions.quoting import q
from resync.actions.types import Ref, Shell
from resync.model.keys import Key

RUNTIME_TIMEOUT = 30.0  # seconds a runtime API command may take (a hung socket fails the action)
# the answer to a change: nothing on success, a sentence on error ("No such server.")
SILENT = "awk 'NF {print \"haproxy: \" $0; bad = 1} END {exit bad}'"
SERVER_STATES = ("ready", "drain", "maint")


def socat(socket: str) -> str:
    return f"socat stdio {q('UNIX-CONNECT:' + socket)}"


def send(socket: str, command: str) -> str:
    """The shell text that sends one runtime API command and prints its answer."""
    return f"echo {q(command)} | {socat(socket)}"


def change(host: str, socket: str, command: str, *, privileged: bool = True) -> Shell:
    """A runtime API command that changes something: fails unless HAProxy's answer is empty."""
    return Shell.line(host, f"{send(socket, command)} | {SILENT}", privileged=privileged,
                      timeout=RUNTIME_TIMEOUT)


# -- maps --------------------------------------------------------------------------------------


def map_entry_state(host: str, socket: str, map_name: str, key: str, into: Key, *,
                    privileged: bool = True) -> Shell:
    """Captures `on` when the map holds the key (exactly), `off` when not; an answer that is not
    a map listing ("Unknown map identifier") fails the action."""
    program = ("'NF && $1 !~ /^0x/ {print \"haproxy: \" $0; bad = 1} $2 == key {found = 1} "
               "END {if (bad) exit 1; print (found ? \"on\" : \"off\")}'")
    return Shell.line(host, f"{send(socket, f'show map {map_name}')} | awk -v key={q(key)} "
                            f"{program}", privileged=privileged, timeout=RUNTIME_TIMEOUT,
                      into=into)


def add_map(host: str, socket: str, map_name: str, key: str, value: str = "on", *,
            privileged: bool = True) -> Shell:
    return change(host, socket, f"add map {map_name} {key} {value}", privileged=privileged)


def del_map(host: str, socket: str, map_name: str, key: str, *, privileged: bool = True) -> Shell:
    """Removes every entry of the key (HAProxy's `del map` does)."""
    return change(host, socket, f"del map {map_name} {key}", privileged=privileged)


# -- servers -----------------------------------------------------------------------------------


def backend_servers(host: str, socket: str, backend: str, into: Key, *,
                    privileged: bool = True) -> Shell:
    """Captures the names of the backend's servers, one a line (`show servers state BE`); none
    (an unknown backend) fails the action with HAProxy's answer."""
    program = ("'{seen = seen $0 \"\\n\"} $2 == be {print $4; n++} "
               "END {if (!n) {printf \"no server of backend %s in: %s\", be, seen; exit 1}}'")
    return Shell.line(host, f"{send(socket, f'show servers state {backend}')} | "
                            f"awk -v be={q(backend)} {program}",
                      privileged=privileged, timeout=RUNTIME_TIMEOUT, into=into)


def set_servers_state(host: str, socket: str, backend: str, servers: Ref, state: str, *,
                      privileged: bool = True) -> Shell:
    """`set server BE/SRV state STATE` for each server of a captured list (one a line)."""
    if state not in SERVER_STATES:
        raise ValueError(f"server state {state!r} is not one of {', '.join(SERVER_STATES)}")
    return Shell.line(host, "printf '%s\\n' ", servers, " | while read -r srv; do echo ",
                      f"\"set server {backend}/$srv state {state}\" | {socat(socket)}; done | "
                      f"{SILENT}", privileged=privileged, timeout=RUNTIME_TIMEOUT)


def set_server_state(host: str, socket: str, backend: str, server: str, state: str, *,
                     privileged: bool = True) -> Shell:
    if state not in SERVER_STATES:
        raise ValueError(f"server state {state!r} is not one of {', '.join(SERVER_STATES)}")
    return change(host, socket, f"set server {backend}/{server} state {state}",
                  privileged=privileged)


def servers_admin_state(host: str, socket: str, backend: str, into: Key, *,
                        privileged: bool = True) -> Shell:
    """Captures `on (s1 maint, s2 maint)`, `off (...)` or `partly on (...)`: whether every
    server of the backend is forced into maintenance (srv_admin_state bit 0x01)."""
    program = ("'$2 == be {n++; m += $7 % 2; list = list sep $4 \" \" ($7 % 2 ? \"maint\" : "
               "\"ready\"); sep = \", \"} END {if (!n) {print \"no server of backend \" be; "
               "exit 1} print (m == n ? \"on\" : m ? \"partly on\" : \"off\") \" (\" list \")\"}'")
    return Shell.line(host, f"{send(socket, f'show servers state {backend}')} | "
                            f"awk -v be={q(backend)} {program}",
                      privileged=privileged, timeout=RUNTIME_TIMEOUT, into=into)
