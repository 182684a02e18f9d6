"""`resync status`: replication threads, lag, last error and coordinates of both hosts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from resync.actions.dialect import ServerVersion, dialect_for
from resync.actions.types import Capture
from resync.model.errors import DatabaseError
from resync.model.keys import Key
from resync.model.runbook import LoadedRunbook
from resync.plan.detect import VERSION_SQL
from resync.run.executor import Executor
from resync.run.runner import scratch_executor


def _k(host: str, name: str) -> Key:
    return Key(f"status.{host}.{name}")


def host_status(exe: Executor, host: str) -> dict[str, str]:
    exe.begin(f"status:{host}")
    try:
        exe.run_one(Capture(host, VERSION_SQL, columns=(("version", _k(host, "version")),
                                                        ("comment", _k(host, "comment")))), "0")
    except DatabaseError as exc:
        return {"server": f"unreachable: {exc}"}
    c = exe.captured
    version = ServerVersion.from_server(str(c[str(_k(host, "version"))]),
                                        str(c[str(_k(host, "comment"))]))
    d = dialect_for(version)
    f = d.status_fields
    fields = (f.source_host, f.io_running, f.sql_running, f.seconds_behind, f.source_log_file,
              f.exec_source_log_pos, f.last_io_error, f.last_sql_error)
    exe.run([Capture(host, d.binlog_status().sql, columns=(("File", _k(host, "file")),
                                                          ("Position", _k(host, "pos")))),
             Capture(host, d.gtid_position().sql, columns=(("gtid", _k(host, "gtid")),)),
             Capture(host, d.replica_status().sql,
                     columns=tuple((name, _k(host, name)) for name in fields))], prefix="1.")

    def get(name: str) -> object:
        return c.get(str(_k(host, name)))

    out = {"server": str(version),
           "binlog": f"{get('file')}:{get('pos')}" if get("file") is not None else "log_bin off",
           "gtid": str(get("gtid") or "")}
    if get(f.source_host) is None:
        out["replication"] = "not a replica"
        return out
    out["replication"] = (f"from {get(f.source_host)}: IO {get(f.io_running)}, "
                          f"SQL {get(f.sql_running)}, lag {get(f.seconds_behind)}")
    out["executed"] = f"{get(f.source_log_file)}:{get(f.exec_source_log_pos)}"
    errors = [str(e) for e in (get(f.last_io_error), get(f.last_sql_error)) if e]
    out["last error"] = "; ".join(errors) or "-"
    return out


def render_status(loaded: LoadedRunbook, console: Console) -> None:
    rb = loaded.model
    hosts = [rb.donor, rb.recipient]
    exe = scratch_executor(loaded)
    try:
        rows = {h: host_status(exe, h) for h in hosts}
    finally:
        exe.close()
    table = Table(title=f"{rb.label}: primary afterwards {rb.primary_after}")
    table.add_column("")
    for h in hosts:
        table.add_column(f"{h} ({'donor' if h == rb.donor else 'recipient'})")
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    for k in keys:
        table.add_row(Text(k), *(Text(rows[h].get(k, "")) for h in hosts))
    console.print(table)
