"""MySQL/MariaDB connections: pymysql with autocommit, clear errors, no secrets in messages."""

from __future__ import annotations

import contextlib
import functools
import ssl
from dataclasses import dataclass
from typing import Any, Literal

import pymysql
import pymysql.cursors
from pymysql.constants import CR, ER

from resync.actions.dialect import ServerVersion
from resync.model.errors import DatabaseError, ServerUnreachable
from resync.model.secrets import Secret, mask

# client errors that mean "nothing (reachable) answers there": ServerUnreachable, not a DatabaseError
_CANT_CONNECT = (CR.CR_CONNECTION_ERROR, CR.CR_CONN_HOST_ERROR, CR.CR_UNKNOWN_HOST,
                 CR.CR_SERVER_LOST)


class TLSRefused(DatabaseError):
    """TLS is required and the server offers none, or its certificate does not verify: a
    refusal (exit 3, as a gate: before a run nothing was changed), not a server failure. Inside
    a step it fails the step like any other DatabaseError."""

    exit_code = 3


@dataclass(frozen=True)
class TLSOptions:
    """How the controller's connection is secured. `preferred`: TLS when the server offers it
    (unverified); a CA (or a client certificate) makes TLS required, a CA also verified."""

    mode: Literal["required", "preferred", "off"] = "preferred"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_identity: bool = False

    @property
    def required(self) -> bool:
        return self.mode == "required" or bool(self.ca or self.cert)

    def context(self) -> ssl.SSLContext:
        """The standard library's context for pymysql: with a CA the server's certificate must
        chain to it (and name the host, verify_identity); without one it is not checked."""
        ctx = ssl.create_default_context(cafile=self.ca) if self.ca else ssl.SSLContext(
            ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = bool(self.ca) and self.verify_identity
        ctx.verify_mode = ssl.CERT_REQUIRED if self.ca else ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def describe(self) -> str:
        if self.mode == "off":
            return "PLAINTEXT (tls mode off)"
        if self.ca:
            return "TLS (CA verified" + (", host name checked)" if self.verify_identity else ")")
        return "TLS (required, unverified)" if self.required else "TLS if offered (unverified)"


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
    tls: TLSOptions = TLSOptions()

    def describe(self) -> str:
        where = self.socket or f"{self.host}:{self.port}"
        return f"{self.user}@{where}"


class Session:
    """One autocommit connection. Statements are always sent with bound parameters."""

    def __init__(self, spec: ConnectionSpec, conn: Any) -> None:
        self.spec = spec
        self._conn = conn

    @property
    def encrypted(self) -> bool:
        """The connection runs over TLS (pymysql wraps its socket once the handshake is done)."""
        return isinstance(getattr(self._conn, "_sock", None), ssl.SSLSocket)

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


@functools.cache
def _unverified_context() -> ssl.SSLContext:
    """The context of TLS `preferred` without a CA: encryption if offered, nothing verified.
    One for the process: pymysql's own default builds a new one for every connection and
    loads the system's CA store into it (~50 ms, though CERT_NONE never reads it), and the
    polls for a server going down or coming up connect many times inside the write-downtime."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Connection(pymysql.connections.Connection):  # type: ignore[misc]
    def _create_ssl_ctx(self, sslp: Any) -> ssl.SSLContext:
        # pymysql (1.1+) asks for `{}` in its preferred mode: no CA, no verification
        if isinstance(sslp, dict) and not sslp:
            return _unverified_context()
        return super()._create_ssl_ctx(sslp)  # type: ignore[no-any-return]


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
    _tls_arguments(spec, kwargs)
    try:
        conn = _Connection(**kwargs)
    except pymysql.MySQLError as exc:
        raise _connect_error(spec, exc) from None
    session = Session(spec, conn)
    if spec.tls.required and not session.encrypted:  # a pymysql that fell back silently
        session.close()
        raise TLSRefused(f"[{spec.name}] the connection as {spec.describe()} is not encrypted, "
                         "but mysql.tls requires TLS: refused")
    return session


def _tls_arguments(spec: ConnectionSpec, kwargs: dict[str, Any]) -> None:
    """pymysql's own TLS: a context makes it required; no argument is its preferred mode (TLS
    when the server offers it); ssl_disabled turns it off."""
    if spec.tls.mode == "off":
        kwargs["ssl_disabled"] = True
    elif spec.tls.required:
        try:
            kwargs["ssl"] = spec.tls.context()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise TLSRefused(f"[{spec.name}] cannot use the TLS files of mysql.tls: "
                             f"{exc}") from None


def _connect_error(spec: ConnectionSpec, exc: pymysql.MySQLError) -> DatabaseError:
    code = exc.args[0] if exc.args else None
    secrets = [spec.password] if spec.password else []
    detail = mask(str(exc.args[1]) if len(exc.args) > 1 else str(exc), secrets)
    cause = getattr(exc, "original_exception", None)  # pymysql wraps socket errors in 2003
    if isinstance(cause, ssl.SSLError):  # the handshake: a certificate that did not verify
        why = getattr(cause, "verify_message", None) or cause.reason or str(cause)
        return TLSRefused(f"[{spec.name}] TLS with {spec.describe()} failed: {why} (check "
                          "mysql.tls.ca; with verify_identity the certificate must also name "
                          "the address connected to)", code=code if isinstance(code, int) else None)
    if code == CR.CR_SSL_CONNECTION_ERROR:
        return TLSRefused(f"[{spec.name}] cannot connect as {spec.describe()}: TLS is required "
                          f"(mysql.tls) but the server offers none: {detail}", code=code)
    if code == ER.ACCESS_DENIED_ERROR:
        hint = "wrong user or password (check the password_env variable / defaults_file)"
    elif code in _CANT_CONNECT:
        hint = "server unreachable (is it running, is the address/port right, firewall?)"
    else:
        hint = f"error {code}"
    error = ServerUnreachable if code in _CANT_CONNECT else DatabaseError
    return error(f"[{spec.name}] cannot connect as {spec.describe()}: {hint}: {detail}",
                 code=code if isinstance(code, int) else None)
