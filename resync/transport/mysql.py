"""MySQL/MariaDB connections: pymysql with autocommit, clear errors, no secrets in messages."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pymysql
import pymysql.cursors

from resync.actions.dialect import ServerVersion
from resync.model.errors import DatabaseError, ServerUnreachable
from resync.model.runbook import HostSettings, LoadedRunbook
from resync.model.secrets import Secret, mask

# MySQL error codes that deserve a plain-words explanation
_ACCESS_DENIED = 1045
_CANT_CONNECT = (2002, 2003, 2005, 2013)


@dataclass(frozen=True)
class ConnectionSpec:
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

    @classmethod
    def from_runbook(cls, loaded: LoadedRunbook, name: str) -> ConnectionSpec:
        h: HostSettings = loaded.model.hosts[name]
        m = h.mysql
        password = (loaded.secret(m.password_env, "hosts", name, "mysql", "password_env")
                    if m.password_env else None)
        ssl: dict[str, Any] | None = None
        if m.tls:
            ssl = {k: v for k, v in (("ca", m.tls.ca), ("cert", m.tls.cert), ("key", m.tls.key)) if v}
            ssl["check_hostname"] = m.tls.verify_identity
        return cls(name=name, host=h.mysql_host, port=m.port, user=m.user, password=password,
                   defaults_file=m.defaults_file, socket=m.socket,
                   connect_timeout=m.connect_timeout, ssl=ssl)


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
            raise DatabaseError(f"[{self.spec.name}] {self._explain(exc)}") from None

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
        if code == _ACCESS_DENIED:
            hint = "wrong user or password (check the password_env variable / defaults_file)"
        elif code in _CANT_CONNECT:
            hint = "server unreachable (is it running, is the address/port right, firewall?)"
        else:
            hint = f"error {code}"
        error = ServerUnreachable if code in _CANT_CONNECT else DatabaseError
        raise error(f"[{spec.name}] cannot connect as {spec.describe()}: {hint}: "
                    f"{detail}") from None
    return Session(spec, conn)
