"""One root exception, one class per area. Only cli.py turns these into messages and exit codes."""

from __future__ import annotations


class ResyncError(Exception):
    """Root of every error resync raises on purpose."""

    exit_code = 1
    hint: str | None = None  # what the operator can do next, printed under the message


class RunbookError(ResyncError):
    """The runbook is malformed. Nothing has been touched."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("invalid runbook:\n  " + "\n  ".join(problems))


class BadInputError(ResyncError):
    """Bad command-line input or environment. Nothing has been touched."""

    exit_code = 2


class GateRefused(ResyncError):
    """A gate (preflight, window) refused to let the run start."""

    exit_code = 3


class PreflightFailed(GateRefused):
    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("preflight failed:\n  - " + "\n  - ".join(failures))


class HostError(ResyncError):
    """A command on a host failed. Carries the command (secrets masked), exit code, output tail."""

    def __init__(self, host: str, command: str, exit_code: int | None, output_tail: str) -> None:
        self.host = host
        self.command = command
        self.returncode = exit_code
        self.output_tail = output_tail
        status = "timed out" if exit_code is None else f"exited {exit_code}"
        tail = f"\n{output_tail.rstrip()}" if output_tail.strip() else ""
        super().__init__(f"[{host}] command {status}: {command}{tail}")


class DatabaseError(ResyncError):
    """A MySQL/MariaDB connection or statement failed; `code` is the server's or client's error
    number (pymysql.constants.ER / CR), when there is one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def lost_connection(self) -> bool:
        from pymysql.constants import CR

        return self.code in (CR.CR_SERVER_GONE_ERROR, CR.CR_SERVER_LOST,
                             CR.CR_CONN_HOST_ERROR, CR.CR_CONNECTION_ERROR)


class ServerUnreachable(DatabaseError):
    """Nothing answers at the server's address and port (stopped, or a wrong address)."""


class LockTimeout(DatabaseError):
    """A lock could not be taken within its timeout; nothing was changed."""


class StepFailed(ResyncError):
    """A step failed; the journal holds the state."""

    def __init__(self, step: str, cause: str) -> None:
        self.step = step
        self.cause = cause
        super().__init__(f"step '{step}' failed: {cause}")


class JournalError(ResyncError):
    """The journal cannot be read, written or locked."""

    exit_code = 2


class Aborted(ResyncError):
    """The operator aborted."""

    exit_code = 130


class WaitTimeout(ResyncError):
    """A condition did not become true within its deadline."""
