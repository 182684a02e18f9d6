"""`resync status`: replication threads, lag, last error and coordinates of both hosts."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from resync.actions.dialect import dialect_for
from resync.model.errors import DatabaseError
from resync.model.runbook import LoadedRunbook
from resync.transport.mysql import ConnectionSpec, connect


def host_status(loaded: LoadedRunbook, host: str) -> dict[str, str]:
    try:
        session = connect(ConnectionSpec.from_runbook(loaded, host))
    except DatabaseError as exc:
        return {"server": f"unreachable: {exc}"}
    try:
        version = session.version()
        d = dialect_for(version)
        out = {"server": str(version)}
        binlog = session.one(d.binlog_status().sql)
        out["binlog"] = f"{binlog['File']}:{binlog['Position']}" if binlog else "log_bin off"
        out["gtid"] = str(session.scalar(d.gtid_position().sql) or "")
        replica = session.one(d.replica_status().sql)
        if replica is None:
            out["replication"] = "not a replica"
            return out
        f = d.status_fields
        out["replication"] = (f"from {replica.get(f.source_host)}: IO {replica.get(f.io_running)}, "
                              f"SQL {replica.get(f.sql_running)}, "
                              f"lag {replica.get(f.seconds_behind)}")
        out["executed"] = (f"{replica.get(f.source_log_file)}:"
                           f"{replica.get(f.exec_source_log_pos)}")
        errors = [str(e) for e in (replica.get(f.last_io_error), replica.get(f.last_sql_error)) if e]
        out["last error"] = "; ".join(errors) or "-"
        return out
    finally:
        session.close()


def render_status(loaded: LoadedRunbook, console: Console) -> None:
    rb = loaded.model
    hosts = [rb.donor, rb.recipient]
    rows = {h: host_status(loaded, h) for h in hosts}
    table = Table(title=f"{rb.name}: primary afterwards {rb.primary_after}")
    table.add_column("")
    for h in hosts:
        table.add_column(f"{h} ({'donor' if h == rb.donor else 'recipient'})")
    keys = list(dict.fromkeys(k for r in rows.values() for k in r))
    for k in keys:
        table.add_row(Text(k), *(Text(rows[h].get(k, "")) for h in hosts))
    console.print(table)
