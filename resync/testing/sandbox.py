"""Throwaway local mariadbd servers (Debian packages, no systemd) for integration tests and demos.

Each server lives in <root>/<name>: my.cnf, data/, tmp/, run/ (socket, pid), error.log, start.sh
and stop.sh (a runbook's service commands). The scripts rely on my.cnf alone, so they keep working
once the datadir is replaced by a physical copy from another server. Needs root (user=mysql).

With `loop_volumes=True` each <root>/<name> is the mount point of its own ext4 filesystem, a sparse
1 GiB image <root>/<name>.img on a loop device (as a data volume on EC2): the datadir is a
sub-directory of it, never the mount point itself (resync renames the datadir aside); with
`volume_mount="datadir"` the datadir itself is the mount point instead (the common layout on EC2,
a data volume at /var/lib/mysql, which the EBS copy's mode swap replaces). destroy()
unmounts and detaches them once the servers are stopped. Needs losetup, mkfs.ext4, mount, umount.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from resync.actions.quoting import sql_literal
from resync.model.errors import ResyncError
from resync.testing.tls import server_options as tls_options

SANDBOX_PASSWORD_ENV = "RESYNC_SANDBOX_PASSWORD"
REPL_PASSWORD_ENV = "RESYNC_SANDBOX_REPL_PASSWORD"
APP_PASSWORD_ENV = "RESYNC_SANDBOX_APP_PASSWORD"
APP_USER = "app"  # the application: DML on the `app` schema only, no admin rights
ADMIN_USER = "resync"
REPL_USER = "repl"
OWNER = "mysql:mysql"
MARIADBD = "/usr/sbin/mariadbd"
CLIENT_TOOLS = ("mariadb", "mariadb-admin", "mariadb-install-db")
INSTALL_HINT = "apt-get install mariadb-server mariadb-client mariadb-backup"
START_TIMEOUT = 30  # seconds start.sh waits for the server to accept root on its socket
STOP_TIMEOUT = 60  # seconds stop.sh waits for the process to be gone
LOOP_TOOLS = ("truncate", "mkfs.ext4", "losetup", "mount", "umount")
LOOP_IMAGE_SIZE = "1G"
UMOUNT_TIMEOUT = 5.0  # seconds of retries while a filesystem is busy, then a lazy unmount
_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, NUL included
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as a runbook's host names

_SH_HEAD = """\
#!/bin/sh
# {what} sandbox mariadbd {name}. Depends on my.cnf only (the datadir may be a copy).
set -u
cnf={cnf}; pidfile={pidfile}; log={log}; timeout={timeout}
pid=$(cat "$pidfile" 2>/dev/null || pgrep -o -x -f "{mariadbd} --defaults-file=$cnf" || true)
running() {{ [ -n "$pid" ] && grep -qsaF -- "--defaults-file=$cnf" "/proc/$pid/cmdline"; }}
fail() {{ echo "$0: $1; tail of $log:" >&2; tail -n 25 "$log" >&2; exit 1; }}
"""
# Both scripts poll every 0.05 s: they stand in for `systemctl start|stop mariadb`, which return
# as soon as the server reports ready or gone (Type=notify); a coarser poll would add its own
# latency to every downtime measured on the sandbox.
_START_SH = """\
ready() {{ mariadb-admin --defaults-file="$cnf" --connect-timeout=2 status >/dev/null 2>&1; }}
install -d -o mysql -g mysql -m 0750 {run} {tmp}
# our own child until it has exec'd mariadbd; a zombie once it has exited
alive() {{ [ -r "/proc/$pid/stat" ] && ! grep -q ') Z ' "/proc/$pid/stat"; }}
if ! running; then
    setsid {mariadbd} --defaults-file="$cnf" </dev/null >>"$log" 2>&1 &
    pid=$!
fi
i=0
until ready; do
    alive || fail "mariadbd ($cnf) exited during startup"
    i=$((i + 1))
    [ "$i" -le $((timeout * 20)) ] || fail "mariadbd (pid $pid) not ready after ${{timeout}}s"
    sleep 0.05
done
echo "{name}: mariadbd running (pid $pid)"
"""
_STOP_SH = """\
running || {{ echo "{name}: already stopped"; exit 0; }}
if ! mariadb --defaults-file="$cnf" -e SHUTDOWN; then  # returns at once; then poll the pid
    echo "$0: SHUTDOWN as root on the socket failed; sending SIGTERM to $pid" >&2
    kill -TERM "$pid" 2>/dev/null || true
fi
i=0
while running; do
    i=$((i + 1))
    [ "$i" -le $((timeout * 20)) ] || fail "mariadbd (pid $pid) still running after ${{timeout}}s"
    sleep 0.05
done
echo "{name}: stopped"
"""


class SandboxError(ResyncError):
    """A sandbox server could not be created, started, stopped or queried."""


def missing_tools() -> list[str]:
    """The MariaDB programs the sandbox needs that are not installed (empty when all are)."""
    missing = [] if os.access(MARIADBD, os.X_OK) else ["mariadbd"]
    return missing + [tool for tool in CLIENT_TOOLS if shutil.which(tool) is None]



def _run(argv: Sequence[str] | str, what: str, timeout: float, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                              shell=isinstance(argv, str), check=False)
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"{what}: timed out after {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise SandboxError(f"{what}: exited {done.returncode}\n{tail}")
    return done.stdout


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo."""

    device: tuple[int, int]  # (major, minor) of the filesystem: os.major/minor of st_dev
    root: str  # the directory of the filesystem mounted there: "/" unless a bind mount
    target: Path
    source: str  # /dev/loop3, tmpfs, ...


def _unescape_mountinfo(text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mount_table() -> list[MountEntry]:
    """This process's mounts, in /proc/self/mountinfo order (a mount after those it covers)."""
    entries = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        dash = fields.index("-")
        major, minor = fields[2].split(":")
        entries.append(MountEntry((int(major), int(minor)), _unescape_mountinfo(fields[3]),
                                  Path(_unescape_mountinfo(fields[4])),
                                  _unescape_mountinfo(fields[dash + 2])))
    return entries


def _mounts_at_or_under(path: Path) -> list[MountEntry]:
    path = path.resolve()
    return [m for m in mount_table() if m.target == path or path in m.target.parents]


def loop_backing_file(device: str) -> str | None:
    """The file behind /dev/loopN (" (deleted)" appended once removed); None when unbound."""
    try:
        name = Path(device).name
        return Path(f"/sys/block/{name}/loop/backing_file").read_text().strip() or None
    except OSError:
        return None


def _thaw(target: Path) -> None:
    """fsfreeze -u: a no-op (EINVAL) unless frozen; nothing froze it where there is no fsfreeze."""
    with contextlib.suppress(FileNotFoundError):
        subprocess.run(["fsfreeze", "-u", str(target)], capture_output=True, check=False, timeout=30)


def _blocked_for_mysql(path: Path) -> Path | None:
    """The first directory on the way to path that user mysql cannot traverse (mode bits only)."""
    try:
        user = pwd.getpwnam("mysql")
    except KeyError:
        raise SandboxError(f"no 'mysql' user on this machine: {INSTALL_HINT}") from None
    gids = {user.pw_gid} | {g.gr_gid for g in grp.getgrall() if "mysql" in g.gr_mem}
    for d in (*reversed(path.parents), path):
        st = d.stat()
        bit = stat.S_IXUSR if st.st_uid == user.pw_uid else (
            stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH)
        if not st.st_mode & bit:
            return d
    return None


def _free_base_port(address: str, count: int) -> int:
    """A base port with `count` consecutive free ports, below Linux's ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 32000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    stack.enter_context(socket.socket()).bind((address, port))
        except OSError:
            continue
        return base
    raise SandboxError(f"no {count} consecutive free ports found on {address}")


def _pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""  # zombies have an empty cmdline
    except OSError:
        return False


def _terminate(pids: list[int], grace: float) -> None:
    """SIGTERM (a clean shutdown for mariadbd) + SIGCONT (in case it was stopped), SIGKILL later."""
    for sigs, wait in (((signal.SIGTERM, signal.SIGCONT), grace), ((signal.SIGKILL,), 10.0)):
        for pid in pids:
            for sig in sigs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while (pids := [p for p in pids if _pid_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids:
            return
    raise SandboxError(f"mariadbd pids {pids} survived SIGKILL")


@dataclass(frozen=True)
class SandboxServer:
    name: str
    base: Path
    address: str
    port: int
    server_id: int
    image: Path | None = None  # loop_volumes: the ext4 image mounted on `base`
    loop_device: str | None = None  # loop_volumes: /dev/loopN of `image`, once attached

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def cnf(self) -> Path:
        return self.base / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.base / "run" / "mysqld.sock"

    @property
    def pidfile(self) -> Path:
        return self.base / "run" / "mariadbd.pid"

    @property
    def errorlog(self) -> Path:
        return self.base / "error.log"

    @property
    def start_command(self) -> str:
        return f"sh {shlex.quote(str(self.base / 'start.sh'))}"

    @property
    def stop_command(self) -> str:
        return f"sh {shlex.quote(str(self.base / 'stop.sh'))}"

    def pids(self) -> list[int]:
        """Live mariadbd processes started with this server's my.cnf (found via /proc)."""
        want = f"--defaults-file={self.cnf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if os.path.basename(argv[0]) == b"mariadbd" and want in argv:
                found.append(int(entry.name))
        return found

    def is_running(self) -> bool:
        return bool(self.pids())

    def start(self) -> None:
        _run(self.start_command, f"{self.name}: {self.start_command}", START_TIMEOUT + 15)

    def stop(self) -> None:
        _run(self.stop_command, f"{self.name}: {self.stop_command}", STOP_TIMEOUT + 15)

    def sql(self, statements: str, timeout: float = 30.0) -> str:
        """Run SQL as root over the socket (via stdin, so no secret shows in ps); tab-separated."""
        argv = ["mariadb", f"--defaults-file={self.cnf}", "--batch", "--skip-column-names"]
        return _run(argv, f"{self.name}: SQL", timeout, stdin=statements)

    def query(self, statement: str) -> list[dict[str, str]]:
        """One SELECT/SHOW as root; rows as dicts of column -> text ('NULL' for NULL)."""
        argv = ["mariadb", f"--defaults-file={self.cnf}", "--batch"]
        lines = _run(argv, f"{self.name}: SQL", 30.0, stdin=statement).splitlines()
        if not lines:
            return []
        return [dict(zip(lines[0].split("\t"), ln.split("\t"), strict=True)) for ln in lines[1:]]


class Sandbox:
    """N independent mariadbd servers under one root; a context manager (create ... destroy)."""

    def __init__(self, root: Path, names: Sequence[str] = ("db1", "db2"),
                 base_port: int | None = None, address: str | Sequence[str] = "127.0.0.1",
                 admin_password: str | None = None, repl_password: str | None = None,
                 logs_outside_datadir: bool = False, loop_volumes: bool = False,
                 volume_mount: Literal["base", "datadir"] = "base", tls: bool = False) -> None:
        # tls: each server offers TLS with a certificate of a sandbox CA (resync.testing.tls)
        self.tls = tls
        # logs_outside_datadir: binary and relay logs under <server>/logs, as /var/log/mysql
        self.logs_outside_datadir = logs_outside_datadir
        # loop_volumes: each <server> directory is an ext4 filesystem on a loop device
        self.loop_volumes = loop_volumes
        self.volume_mount = volume_mount  # where each volume is mounted: <server> or its datadir
        if not names or len(set(names)) != len(names) or not all(map(_NAME.fullmatch, names)):
            raise ValueError(f"server names must be distinct identifiers: {names!r}")
        self.root = Path(root).absolute()
        # one address for all, or one per server (distinct loopback addresses act as hosts)
        addresses = [address] * len(names) if isinstance(address, str) else list(address)
        if len(addresses) != len(names):
            raise ValueError(f"{len(names)} servers need {len(names)} addresses: {addresses!r}")
        self.address = addresses[0]
        env = os.environ.get
        self.admin_password = admin_password or env(SANDBOX_PASSWORD_ENV) or secrets.token_hex(12)
        self.repl_password = repl_password or env(REPL_PASSWORD_ENV) or secrets.token_hex(12)
        self.app_password = env(APP_PASSWORD_ENV) or secrets.token_hex(12)
        port = _free_base_port(addresses[0], len(names)) if base_port is None else base_port
        self.servers: tuple[SandboxServer, ...] = tuple(
            SandboxServer(name, self.root / name, addresses[i], port + i, i + 1,
                          image=self.root / f"{name}.img" if loop_volumes else None)
            for i, name in enumerate(names))

    def __getitem__(self, name: str) -> SandboxServer:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(name)

    def __iter__(self) -> Iterator[SandboxServer]:
        return iter(self.servers)

    def env(self) -> dict[str, str]:
        """The environment variables that runbook_hosts() and a runbook's replication refer to."""
        return {SANDBOX_PASSWORD_ENV: self.admin_password, REPL_PASSWORD_ENV: self.repl_password,
                APP_PASSWORD_ENV: self.app_password}

    def create(self) -> None:
        """Write config and scripts, initialise and start every server, create the users."""
        self._check_prerequisites()
        atexit.register(self._at_exit)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o755)
            if self.loop_volumes:
                self._attach_volumes()
            for server in self.servers:
                self._write_files(server)
            first = self.servers[0]
            _run(["mariadb-install-db", f"--defaults-file={first.cnf}", "--skip-test-db",
                  "--auth-root-authentication-method=normal"], f"{first.name}: install-db", 120)
            for server in self.servers[1:]:  # a clone is 4x faster than another install-db
                if self.loop_volumes and self.volume_mount == "datadir":  # a mount point stays
                    _run(["cp", "-a", f"{first.datadir}/.", str(server.datadir)], "cp -a datadir",
                         120)
                    continue
                server.datadir.rmdir()
                _run(["cp", "-a", str(first.datadir), str(server.datadir)], "cp -a datadir", 120)
            for server in self.servers:
                server.start()
                server.sql(self._users_sql())
        except BaseException:
            self.kill_all()
            with contextlib.suppress(SandboxError):  # destroy() tries again and reports
                self._release_volumes()
            raise

    def start_all(self) -> None:
        for server in self.servers:
            server.start()

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()

    def kill_all(self, grace: float = 15.0) -> None:
        """SIGTERM every mariadbd of this sandbox (found by my.cnf path), SIGKILL after `grace`."""
        if self.loop_volumes:  # a server blocked on a frozen filesystem would survive SIGKILL
            self._thaw_volumes()
        _terminate([pid for server in self.servers for pid in server.pids()], grace)

    def destroy(self, grace: float = 15.0) -> None:
        """Stop every server (no process of ours survives), unmount and detach the loop volumes
        (loop_volumes), then remove the root directory."""
        try:
            self.kill_all(grace)
        finally:
            atexit.unregister(self._at_exit)
        try:
            self._release_volumes()
        finally:
            if not (self.loop_volumes and _mounts_at_or_under(self.root)):  # not through a mount
                shutil.rmtree(self.root, ignore_errors=True)

    def _at_exit(self) -> None:
        try:
            self.kill_all()
        finally:
            self._release_volumes()

    def _attach_volumes(self) -> None:
        """Per server: a sparse ext4 image on a loop device, mounted on the server's directory."""
        servers = list(self.servers)
        for i, s in enumerate(servers):
            assert s.image is not None
            _run(["truncate", "-s", LOOP_IMAGE_SIZE, str(s.image)], f"{s.name}: truncate", 30)
            _run(["mkfs.ext4", "-q", str(s.image)], f"{s.name}: mkfs.ext4", 120)
            device = _run(["losetup", "-f", "--show", str(s.image)], f"{s.name}: losetup", 30)
            servers[i] = replace(s, loop_device=device.strip())
            self.servers = tuple(servers)  # recorded at once: destroy() detaches it
            s.base.mkdir(mode=0o755)
            if self.volume_mount == "datadir":
                s.datadir.mkdir(mode=0o750)
                _run(["mount", device.strip(), str(s.datadir)], f"{s.name}: mount", 30)
                (s.datadir / "lost+found").rmdir()  # it would be a schema `#mysql50#lost+found`
                s.datadir.chmod(0o750)
                shutil.chown(s.datadir, "mysql", "mysql")
                continue
            _run(["mount", device.strip(), str(s.base)], f"{s.name}: mount {device.strip()}", 30)
            s.base.chmod(0o755)  # the filesystem's root directory: user mysql goes through it

    def _thaw_volumes(self) -> None:
        for target in {m.target for s in self.servers for m in _mounts_at_or_under(s.base)}:
            _thaw(target)

    def _release_volumes(self) -> None:
        """Unmount everything at or under each server's directory, latest mount first, then
        detach the loop devices of its image. Idempotent; tolerates a partial setup. A mount still
        busy after UMOUNT_TIMEOUT is detached lazily (and reported): nothing stays mounted."""
        if not self.loop_volumes:
            return
        errors: list[str] = []
        for s in self.servers:
            while mounts := _mounts_at_or_under(s.base):
                target = mounts[-1].target
                _thaw(target)
                deadline = time.monotonic() + UMOUNT_TIMEOUT
                while (done := subprocess.run(["umount", str(target)], capture_output=True,
                                              text=True, check=False, timeout=60)).returncode:
                    if time.monotonic() > deadline:
                        errors.append(f"umount {target}: {done.stderr.strip()} (unmounted lazily)")
                        subprocess.run(["umount", "-l", str(target)], capture_output=True,
                                       check=False, timeout=60)
                        break
                    time.sleep(0.2)
                if mounts == _mounts_at_or_under(s.base):
                    errors.append(f"{target} could not be unmounted")
                    break
            devices: set[str] = set()
            if s.image is not None and s.image.exists():
                listed = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(s.image)],
                                        capture_output=True, text=True, check=False, timeout=30)
                devices |= set(listed.stdout.split())
            backing = loop_backing_file(s.loop_device) if s.loop_device else None
            if s.loop_device and backing and backing.removesuffix(" (deleted)") == str(s.image):
                devices.add(s.loop_device)
            for device in sorted(devices):
                done = subprocess.run(["losetup", "-d", device], capture_output=True, text=True,
                                      check=False, timeout=30)
                if done.returncode:
                    errors.append(f"losetup -d {device}: {done.stderr.strip()}")
        if errors:
            raise SandboxError("loop volumes not released cleanly: " + "; ".join(errors))

    def setup_replication(self, primary: str, replica: str, timeout: float = 30.0) -> None:
        """GTID replication (slave_pos) from primary to replica; waits until both threads run."""
        src, dst = self[primary], self[replica]
        dst.sql("STOP SLAVE;\n"
                f"CHANGE MASTER TO MASTER_HOST={sql_literal(src.address)}, "
                f"MASTER_PORT={src.port}, MASTER_USER={sql_literal(REPL_USER)}, "
                f"MASTER_PASSWORD={sql_literal(self.repl_password)}, "
                "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1;\nSTART SLAVE;\n")
        deadline = time.monotonic() + timeout
        while True:
            rows = dst.query("SHOW SLAVE STATUS")
            st = rows[0] if rows else {}
            if st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes":
                return
            sql_failed = st.get("Slave_SQL_Running") == "No" and st.get("Last_SQL_Errno") != "0"
            if sql_failed or time.monotonic() > deadline:
                raise SandboxError(
                    f"replication {primary} -> {replica} not running: "
                    f"IO={st.get('Slave_IO_Running')} SQL={st.get('Slave_SQL_Running')} "
                    f"io_error={st.get('Last_IO_Error')!r} sql_error={st.get('Last_SQL_Error')!r}")
            time.sleep(0.1)

    def runbook_hosts(self) -> dict[str, dict[str, Any]]:
        """The `hosts:` section of a runbook for these servers (passwords by env var name)."""
        return {s.name: {
            "address": s.address,
            "local": True,
            "mysql": {"host": s.address, "port": s.port, "user": ADMIN_USER,
                      "password_env": SANDBOX_PASSWORD_ENV},
            "datadir": str(s.datadir),
            "owner": OWNER,
            "service": {"start": s.start_command, "stop": s.stop_command,
                        "config_dropin": str(s.base / "conf.d" / "zz-resync.cnf")},
        } for s in self.servers}

    def __enter__(self) -> Self:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.destroy()

    def _check_prerequisites(self) -> None:
        if missing := missing_tools():
            raise SandboxError(f"{', '.join(missing)} not installed: {INSTALL_HINT}")
        if os.geteuid() != 0:
            raise SandboxError("the sandbox must run as root (mariadbd runs as user mysql)")
        if self.root.exists() and any(self.root.iterdir()):
            raise SandboxError(f"{self.root} is not empty (destroy() deletes it): pick a new root")
        missing = [tool for tool in LOOP_TOOLS if shutil.which(tool) is None]
        if self.loop_volumes and missing:
            raise SandboxError(f"loop_volumes needs {', '.join(missing)}: "
                               "apt-get install util-linux mount e2fsprogs coreutils")
        for server in self.servers:
            if len(str(server.socket)) > _MAX_SOCKET_PATH:
                raise SandboxError(f"socket path too long for a unix socket: {server.socket}")
        existing = next(p for p in (self.root, *self.root.parents) if p.exists())
        if (blocked := _blocked_for_mysql(existing)) is not None and blocked != self.root:
            raise SandboxError(f"user mysql cannot traverse {blocked}, on the way to "
                               f"{self.root}: `chmod o+x {blocked}` or choose another root")

    def _write_files(self, s: SandboxServer) -> None:
        s.base.mkdir(mode=0o755, exist_ok=True)
        logs = ""
        if self.logs_outside_datadir:
            (s.base / "logs").mkdir(mode=0o750, exist_ok=True)
            shutil.chown(s.base / "logs", "mysql", "mysql")
            logs = f"{s.base / 'logs'}/"
        s.cnf.write_text(
            "[mariadbd]\n"
            f"user=mysql\ndatadir={s.datadir}\ntmpdir={s.base / 'tmp'}\n"
            f"port={s.port}\nbind-address={s.address}\nsocket={s.socket}\n"
            f"pid-file={s.pidfile}\nlog-error={s.errorlog}\nserver-id={s.server_id}\n"
            f"log-bin={logs}mysql-bin\nrelay-log={logs}relay-bin\n"
            "binlog-format=ROW\nlog-slave-updates=ON\n"
            "skip-name-resolve\ninnodb_buffer_pool_size=64M\ninnodb_log_file_size=32M\n"
            + (tls_options(self.root, s.name, s.address) if self.tls else "") +
            f"\n[client]\nuser=root\nsocket={s.socket}\n"
            # last: what resync writes here for the starts it makes (read_only, no replica start)
            f"\n!includedir {s.base / 'conf.d'}\n")
        (s.base / "conf.d").mkdir(mode=0o755, exist_ok=True)
        q = {k: shlex.quote(str(v)) for k, v in (
            ("cnf", s.cnf), ("pidfile", s.pidfile), ("log", s.errorlog),
            ("run", s.socket.parent), ("tmp", s.base / "tmp"))}
        for script, what, body, timeout in (("start.sh", "Start", _START_SH, START_TIMEOUT),
                                            ("stop.sh", "Cleanly stop", _STOP_SH, STOP_TIMEOUT)):
            (s.base / script).write_text((_SH_HEAD + body).format(
                what=what, name=s.name, timeout=timeout, mariadbd=MARIADBD, **q))
        s.errorlog.touch(mode=0o640)
        for d in (s.datadir, s.base / "tmp", s.socket.parent):
            d.mkdir(mode=0o750, exist_ok=True)
        for p in (s.datadir, s.base / "tmp", s.socket.parent, s.errorlog):
            shutil.chown(p, "mysql", "mysql")

    def _users_sql(self) -> str:
        admin, repl = sql_literal(self.admin_password), sql_literal(self.repl_password)
        # Not binlogged: a replica replaying the primary's CREATE USER would stop with error 1396.
        # root keeps only root@localhost (unix socket, used by start.sh/stop.sh and sql()).
        lines = ["SET SESSION sql_log_bin=0;",
                 "DROP USER IF EXISTS root@'127.0.0.1', root@'::1';",
                 "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@', QUOTE(@@hostname));"]
        for host in ("127.0.0.1", "%"):
            lines += [f"CREATE USER '{ADMIN_USER}'@'{host}' IDENTIFIED BY {admin};",
                      f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;"]
        lines += [f"CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY {repl};",
                  f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%';",
                  f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY {sql_literal(self.app_password)};",
                  f"GRANT SELECT, INSERT, UPDATE, DELETE ON `app`.* TO '{APP_USER}'@'%';"]
        return "\n".join(lines) + "\n"
