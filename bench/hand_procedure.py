"""The seed's hand procedure ("Resyncing a Slave to a Master in MySQL", seed 004), scripted and
timed: rebuild the old master (db1, the recipient) from the slave the application failed over to
(db2, the donor); db1 is the master again afterwards. No resync code: the seed's shell and SQL
commands, as an operator types them, one after the other.

The seed's steps, and the only changes made to get a correct result on MariaDB 10.11:
  2  the maintenance page on: the application sends no writes (the writer pauses)
  3  on the slave (db2): STOP SLAVE; RESET SLAVE; FLUSH TABLES WITH READ LOCK (its session open)
     + SELECT @@gtid_binlog_state in that session: db2's GTID history, for step 8
  4  shut down mysql on the slave, then on the master
  5  the application's configuration points at the master (db1)
  6  on the master: the old data directory moved aside, a new one made
     - the seed then copies the master's own `mysql` schema into it and step 7 sends only the
       databases: on MariaDB that breaks the server (ibdata1, ib_logfile0 and the aria_log files
       hold system tables; FIELD-NOTES): the WHOLE datadir is sent instead, without the binary
       and relay logs, the replication info files and the pid file (as the seed says)
  7  on the slave, in its datadir: `tar c ... | nc -l 7878`; on the master, in the new datadir:
     `nc slave-ip 7878 | tar xv`
     + netcat-openbsd: the sender needs -N, the receiver -d (else both hang after the data); the
       receiver connects once the listener is up; `chown -R mysql:mysql` (a root-owned datadir
       does not start)
  8  start the master; RESET MASTER; SHOW MASTER STATUS (its file and position)
     + between the two, SET GLOBAL gtid_binlog_state = db2's: db1's new binary log continues
       the GTID history instead of restarting it at sequence 1 (duplicate GTIDs)
  9  start the slave; CHANGE MASTER TO ... MASTER_LOG_FILE, MASTER_LOG_POS (the position of
     step 8); START SLAVE; check that it replicates (both threads running)
 10  UNLOCK TABLES (as written: the lock ended with the slave's shutdown in step 4)
 11  the maintenance page off: the application writes again, into db1
"""

from __future__ import annotations

import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import Writer

from resync.testing.sandbox import REPL_USER, Sandbox, SandboxServer

# what the seed says not to send, and what MariaDB keeps per server (FIELD-NOTES)
EXCLUDES = ("mysql-bin.*", "relay-bin.*", "master*.info", "relay-log*.info",
            "multi-master.info", "*.pid", "ibtmp1")
REPLICATING_TIMEOUT = 60  # seconds step 9 waits for both replication threads


def sql_literal(text: str) -> str:
    """'text' for the values this procedure quotes (a GTID state, hex passwords, addresses)."""
    if "'" in text or "\\" in text:
        raise ValueError(f"not quoted here: {text!r}")
    return f"'{text}'"


@dataclass
class HandTimes:
    """time.monotonic() of each point of the procedure; bytes sent by tar."""

    marks: dict[str, float] = field(default_factory=dict)
    bytes: int | None = None

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def span(self, start: str, end: str) -> float | None:
        if start in self.marks and end in self.marks:
            return self.marks[end] - self.marks[start]
        return None


def shell(command: str, log: Path, stdin: str | None = None, shown: str | None = None) -> str:
    """An operator's shell command (and what is typed into it); its output appended to the log,
    with the command or what was typed as `shown` (no password in the log)."""
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], input=stdin,
                          capture_output=True, text=True, timeout=3600, check=False)
    with log.open("a") as out:
        out.write(f"$ {command}\n" + (f"> {shown or stdin}\n" if stdin else "")
                  + done.stdout + done.stderr)
    if done.returncode:
        raise RuntimeError(f"hand procedure: `{command}` exited {done.returncode}: "
                           f"{done.stderr.strip()[-400:]}")
    return done.stdout


def mysql(server: SandboxServer, statements: str, log: Path, shown: str | None = None) -> str:
    """The statements typed into `mysql` on the server's host (root over its socket)."""
    return shell(f"mariadb --defaults-file={shlex.quote(str(server.cnf))} --batch "
                 "--skip-column-names", log, stdin=statements, shown=shown)


class LockSession:
    """The operator's open mysql session on the slave that holds the read lock."""

    def __init__(self, server: SandboxServer) -> None:
        self.proc = subprocess.Popen(
            ["mariadb", f"--defaults-file={server.cnf}", "--batch", "--skip-column-names",
             "--unbuffered"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    def ask(self, statements: str) -> str:
        """Run statements ending in a SELECT of one line; that line."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(statements + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line or line.startswith("ERROR"):
            raise RuntimeError(f"hand procedure: the lock session failed: {line.strip()}")
        return line.rstrip("\n")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run(pair: Sandbox, writer: Writer, port: int, log: Path) -> HandTimes:
    """The procedure (module docstring) on pair: donor db2, recipient db1; times of each step."""
    master, slave = pair["db1"], pair["db2"]
    times = HandTimes()
    times.mark("start")
    writer.pause()  # 2
    times.mark("maintenance_on")
    session = LockSession(slave)  # 3
    try:
        session.ask("STOP SLAVE; RESET SLAVE; FLUSH TABLES WITH READ LOCK; SELECT 'locked';")
        times.mark("locked")
        gtid_state = session.ask("SELECT @@GLOBAL.gtid_binlog_state;")
        shell(slave.stop_command, log)  # 4
        times.mark("donor_down")
    finally:
        session.close()
    shell(master.stop_command, log)
    times.mark("recipient_down")
    writer.target = master.name  # 5
    data, aside = master.datadir, f"{master.datadir}.old-{time.time_ns()}"  # 6
    shell(f"mv {data} {aside} && mkdir {data}", log)
    times.bytes = copy(slave, master, port, log, times)  # 7
    shell(master.start_command, log)  # 8
    status = mysql(master, "RESET MASTER; "
                   f"SET GLOBAL gtid_binlog_state = {sql_literal(gtid_state)}; "
                   "SHOW MASTER STATUS;", log).split("\t")
    file, position = status[0], status[1]
    times.mark("master_ready")
    shell(slave.start_command, log)  # 9
    change = ("CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}, MASTER_USER={user}, "
              "MASTER_PASSWORD={password}, MASTER_LOG_FILE={file}, MASTER_LOG_POS={position}; "
              "START SLAVE;")
    values = {"host": sql_literal(master.address), "port": master.port,
              "user": sql_literal(REPL_USER), "file": sql_literal(file), "position": position}
    mysql(slave, change.format(password=sql_literal(pair.repl_password), **values), log,
          shown=change.format(password="'***'", **values))
    wait_replicating(slave, log)
    times.mark("replicating")
    mysql(master, "UNLOCK TABLES;", log)  # 10
    writer.resume()  # 11
    times.mark("end")
    return times


def copy(slave: SandboxServer, master: SandboxServer, port: int, log: Path,
         times: HandTimes) -> int:
    """Step 7: the listener on the slave, the receiver on the master once it listens."""
    excludes = " ".join(f"--exclude={shlex.quote(p)}" for p in EXCLUDES)
    times.mark("copy_start")
    sender = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c",
         f"cd {slave.datadir} && tar c --totals {excludes} . | nc -N -l {slave.address} {port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                 text=True, check=False).stdout.strip():
            if sender.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hand procedure: the listener on :{port} did not start")
            time.sleep(0.01)
        shell(f"cd {master.datadir} && nc -d {slave.address} {port} | tar xv", log)
        _, errors = sender.communicate(timeout=60)
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    times.mark("copy_end")
    with log.open("a") as out:
        out.write(errors)
    if sender.returncode:
        raise RuntimeError(f"hand procedure: the sender exited {sender.returncode}: {errors}")
    shell(f"chown -R mysql:mysql {master.datadir}", log)
    # GNU tar --totals: "Total bytes written: 2147942400 (2.0GiB, 1.1GiB/s)"
    return next(int(line.split()[3]) for line in errors.splitlines()
                if line.startswith("Total bytes written"))


def wait_replicating(slave: SandboxServer, log: Path) -> None:
    deadline = time.monotonic() + REPLICATING_TIMEOUT
    while True:
        rows = slave.query("SHOW SLAVE STATUS")
        st = rows[0] if rows else {}
        if st.get("Slave_IO_Running") == "Yes" and st.get("Slave_SQL_Running") == "Yes":
            return
        if time.monotonic() > deadline:
            mysql(slave, "SHOW SLAVE STATUS\\G", log)
            raise RuntimeError(f"hand procedure: db2 not replicating after {REPLICATING_TIMEOUT}"
                               f" s: IO {st.get('Slave_IO_Running')}, SQL "
                               f"{st.get('Slave_SQL_Running')}: {st.get('Last_IO_Error')} "
                               f"{st.get('Last_SQL_Error')}")
        time.sleep(0.1)
