"""MySQL/MariaDB connections: pymysql with autocommit, clear errors, no secrets in messages."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.constants import CR, ER

from resync.actions.dialect import ServerVersion
from resync.model.errors import DatabaseError, ServerUnreachable
from resync.model.secrets import Secret, mask

# client errors that mean "nothing (reachable) answers there": ServerUnreachable, not a DatabaseError
_CANT_CONNECT = (CR.CR_CONNECTION_ERROR, CR.CR_CONN_HOST_ERROR, CR.CR_UNKNOWN_HOST,
                 CR.CR_SERVER_LOST)


@dataclass(frozen=True)
class ConnectionSpec:
    """Where and how to log in: plain values (resync.run.connect builds one from a runbook)."""

    name: str
    host: str
    port: int
    user: str
    password: Secret | None = None
    defaults_file: str | None = None
    socket: str | None = None
    connect_timeout: float = 10.0
    ssl: dict[str, Any] | None = None

    def describe(self) -> str:
        where = self.socket or f"{self.host}:{self.port}"
        return f"{self.user}@{where}"


class Session:
    """One autocommit connection. Statements are always sent with bound parameters."""

    def __init__(self, spec: ConnectionSpec, conn: Any) -> None:
        self.spec = spec
        self._conn = conn

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(sql, params if params else None)
                rows = cur.fetchall() if cur.description else []
                return list(rows)
        except pymysql.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
            raise DatabaseError(f"[{self.spec.name}] {self._explain(exc)}", code=code) from None

    def one(self, sql: str, params: tuple[object, ...] = ()) -> dict[str, Any] | None:
        rows = self.execute(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    def alive(self) -> bool:
        try:
            self._conn.ping(reconnect=False)
        except Exception:
            return False
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a connection to a stopped server
            self._conn.close()

    def version(self) -> ServerVersion:
        row = self.one("SELECT @@GLOBAL.version AS v, @@GLOBAL.version_comment AS c")
        assert row is not None
        return ServerVersion.from_server(str(row["v"]), str(row["c"]))

    def _explain(self, exc: pymysql.MySQLError) -> str:
        secrets = [self.spec.password] if self.spec.password else []
        code = exc.args[0] if exc.args else None
        text = mask(str(exc.args[1]) if len(exc.args) > 1 else str(exc), secrets)
        return f"error {code}: {text}" if code else text


def connect(spec: ConnectionSpec) -> Session:
    kwargs: dict[str, Any] = {
        "user": spec.user, "connect_timeout": spec.connect_timeout, "autocommit": True,
        "cursorclass": pymysql.cursors.DictCursor, "charset": "utf8mb4",
        "read_timeout": None, "write_timeout": None,
    }
    if spec.socket:
        kwargs["unix_socket"] = spec.socket
    else:
        kwargs["host"], kwargs["port"] = spec.host, spec.port
    if spec.password is not None:
        kwargs["password"] = spec.password.reveal()
    if spec.defaults_file:
        kwargs["read_default_file"] = spec.defaults_file
    if spec.ssl:
        kwargs["ssl"] = spec.ssl
    try:
        conn = pymysql.connect(**kwargs)
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        secrets = [spec.password] if spec.password else []
        detail = mask(str(exc.args[1]) if len(exc.args) > 1 else str(exc), secrets)
        if code == ER.ACCESS_DENIED_ERROR:
            hint = "wrong user or password (check the password_env variable / defaults_file)"
        elif code in _CANT_CONNECT:
            hint = "server unreachable (is it running, is the address/port right, firewall?)"
        else:
            hint = f"error {code}"
        error = ServerUnreachable if code in _CANT_CONNECT else DatabaseError
        raise error(f"[{spec.name}] cannot connect as {spec.describe()}: {hint}: "
                    f"{detail}", code=code if isinstance(code, int) else None) from None
    return Session(spec, conn)
