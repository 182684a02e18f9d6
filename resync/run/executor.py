"""The executor: runs actions exactly as planned and journals each one.

It owns every connection a run makes (hosts, database sessions, the sessions that hold locks),
so nothing else in resync talks to a host or a server. One record per leaf action: host, kind,
the text as sent (values filled in, secrets masked), how it ended and how long it took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from resync.actions.conditions import ProbeAnswer
from resync.actions.external import External, HttpAnswer, Outcome
from resync.actions.types import (
    Action,
    Assert,
    Capture,
    Captured,
    CaptureRows,
    Composite,
    HoldLock,
    Leaf,
    LockAlive,
    Login,
    Poll,
    Probe,
    ReleaseLock,
    Shell,
    Sql,
    Value,
    When,
    rows_json,
)
from resync.model.errors import (
    DatabaseError,
    HostError,
    LockTimeout,
    ResyncError,
    ServerUnreachable,
    WaitTimeout,
)
from resync.model.secrets import EnvSecret, Secret, mask
from resync.run.journal import CommandRecord, Journal
from resync.run.waiting import Clock, SystemClock
from resync.transport.local import Background, CommandResult, Host
from resync.transport.mysql import Session

ProgressFn = Callable[[int, "int | None", str], None]
LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT


def _no_progress(done: int, total: int | None, label: str) -> None:
    pass


def _plain(value: object) -> Value:
    """A driver value as the journal keeps it (GTID sets lose MySQL's line breaks)."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).replace("\n", "")
    # servers send some numbers as text (SHOW ... STATUS): a port must bind as a number
    return int(text) if text.isdigit() and len(text) < 19 else text


def default_aws_client(service: str) -> Any:
    """boto3's own chain: credentials, region, AWS_ENDPOINT_URL[_<SERVICE>]; standard retries
    (throttling backs off); imported here so that nothing else pays for boto3."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(retries={"mode": "standard", "max_attempts": 8}))  # type: ignore[call-overload]


@dataclass
class Executor:
    journal: Journal
    hosts: Callable[[str], Host]
    connect: Callable[[str], Session]
    # the host's server, as another user: (host, user, password) -> a session
    login: Callable[[str, str, Secret], Session] | None = None
    secrets: list[Secret] = field(default_factory=list)
    clock: Clock = field(default_factory=SystemClock)
    progress: ProgressFn = _no_progress
    # AWS clients by service name, made on first use (boto3 is imported only then)
    aws_factory: Callable[[str], Any] | None = None
    step: str = "-"
    phase: str = "run"
    attempt: int = 1
    _hosts: dict[str, Host] = field(default_factory=dict)
    _sessions: dict[str, Session] = field(default_factory=dict)
    _held: dict[str, Session] = field(default_factory=dict)
    _held_since: dict[str, float] = field(default_factory=dict)
    _aws: dict[str, Any] = field(default_factory=dict)

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def captured(self) -> Captured:
        return self.journal.data.captured

    def capture(self, key: object, value: Value) -> None:
        self.journal.capture(str(key), value)

    def begin(self, step: str, *, phase: str = "run", attempt: int = 1) -> None:
        self.step, self.phase, self.attempt = step, phase, attempt

    def aws_client(self, service: str) -> Any:
        if service not in self._aws:
            factory = self.aws_factory or default_aws_client
            self._aws[service] = factory(service)
        return self._aws[service]

    def holds(self, session: str) -> bool:
        held = self._held.get(session)
        return held is not None and held.alive()

    def close(self) -> None:
        for session in [*self._sessions.values(), *self._held.values()]:
            session.close()
        self._sessions.clear()
        self._held.clear()
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

    def _host(self, name: str) -> Host:
        if name not in self._hosts:
            self._hosts[name] = self.hosts(name)
        return self._hosts[name]

    def _session(self, host: str, named: str | None = None) -> Session:
        if named is not None:
            held = self._held.get(named)
            if held is None:
                raise ResyncError(f"session '{named}' on {host} is not open in this process (the "
                                  "lock it held ended with the process that took it)")
            return held
        current = self._sessions.get(host)
        if current is not None and current.alive():
            return current
        if current is not None:
            current.close()
        self._sessions[host] = self.connect(host)
        return self._sessions[host]

    def _mask(self, text: str) -> str:
        return mask(text, self.secrets)

    def _record(self, aid: str, action: Leaf | When, text: str, ok: bool | None, started: float,
                *, exit_code: int | None = None, detail: str | None = None,
                result: str | None = None, kind: str | None = None) -> int:
        return self.journal.record(CommandRecord(
            step=self.step, action=aid, host=action.host, kind=kind or action.kind,
            text=self._mask(text), ok=ok, phase=self.phase, attempt=self.attempt,
            exit_code=exit_code, seconds=round(time.monotonic() - started, 3), at=time.time(),
            detail=self._mask(detail) if detail else None, result=result))

    def _learn_secrets(self, params: Sequence[object]) -> None:
        for value in params:
            secret = value.resolve() if isinstance(value, EnvSecret) else value
            if isinstance(secret, Secret) and secret not in self.secrets:
                self.secrets.append(secret)

    # -- running actions -----------------------------------------------------------------------
    def run(self, actions: Sequence[Action], prefix: str = "") -> None:
        for i, action in enumerate(actions):
            self.run_one(action, f"{prefix}{i}")

    def run_one(self, action: Action, aid: str) -> Any:
        if isinstance(action, HoldLock):
            return self._hold(action, aid)
        if isinstance(action, When):
            return self._when(action, aid)
        if isinstance(action, Composite):
            return action.execute(CompositeRun(self, aid, action))
        return self.leaf(action, aid)

    def leaf(self, action: Leaf, aid: str) -> Any:
        if isinstance(action, Sql):
            return self._sql(action, aid)
        if isinstance(action, Shell):
            return self._shell(action, aid)
        if isinstance(action, Poll):
            return self._poll(action, aid)
        if isinstance(action, Probe):
            return self._probe_once(action, aid)
        if isinstance(action, Login):
            return self._login(action, aid)
        if isinstance(action, LockAlive):
            return self._lock_alive(action, aid)
        if isinstance(action, ReleaseLock):
            return self._release(action, aid)
        if isinstance(action, Assert):
            return self._assert(action, aid)
        if isinstance(action, External):
            return self._external(action, aid)
        raise ResyncError(f"the executor cannot run {type(action).__name__}")

    def _external(self, action: External, aid: str) -> Outcome:
        text = action.render(self.captured)
        started = time.monotonic()
        try:
            outcome = action.perform(ExternalRun(self))
        except ResyncError as exc:
            self._record(aid, action, text, False, started, detail=str(exc))
            raise
        kept = {str(k): v for k, v in outcome.values.items()}
        for name, value in kept.items():
            self.capture(name, value)
        self._record(aid, action, text, outcome.ok, started, detail=outcome.detail,
                     result=json.dumps(kept) if kept else None)
        if not outcome.ok:
            raise ResyncError(outcome.error or f"[{action.host}] {text}: {outcome.detail}")
        return outcome

    def _sql(self, action: Sql, aid: str, session: Session | None = None,
             kind: str | None = None) -> list[dict[str, Any]]:
        text = action.render(self.captured)
        started = time.monotonic()
        self._learn_secrets(action.params)
        sql, params = action.bind(self.captured)
        bound = tuple(v.reveal() if isinstance(v, Secret) else v for v in params)
        try:
            rows = (session or self._session(action.host, action.session)).execute(sql, bound)
        except DatabaseError as exc:
            masked = self._mask(str(exc))  # the server may quote a bound password back
            self._record(aid, action, text, False, started, detail=masked, kind=kind)
            raise type(exc)(masked, code=exc.code) from None
        result = self._keep(action, rows) if isinstance(action, Capture | CaptureRows) else None
        if isinstance(action, Capture) and result is None and action.missing:
            self._record(aid, action, text, False, started, detail=action.missing)
            raise ResyncError(f"[{action.host}] {action.missing}")
        self._record(aid, action, text, True, started, kind=kind,
                     result=json.dumps(result) if result is not None else None)
        return rows

    def _keep(self, action: Capture | CaptureRows, rows: list[dict[str, Any]]) -> dict[str, Value] | None:
        if isinstance(action, CaptureRows):
            values: dict[str, Value] = {str(action.into): rows_json(rows)}
        elif not rows:
            if action.missing:
                return None
            values = {str(key): None for _, key in action.columns}
        else:
            values = {str(key): _plain(rows[0].get(column)) for column, key in action.columns}
        for name, value in values.items():
            self.capture(name, value)
        return values

    def _shell(self, action: Shell, aid: str) -> CommandResult:
        text = action.render(self.captured)
        started = time.monotonic()
        command = action.bind(self.captured)
        try:
            result = self._host(action.host).run(command, privileged=action.privileged,
                                                 timeout=action.timeout, check=False)
        except HostError as exc:
            self._record(aid, action, text, False, started, detail=exc.output_tail)
            raise HostError(action.host, text, exc.returncode, self._mask(exc.output_tail)) from None
        kept = None
        if action.into is not None and (result.ok or not action.check):
            self.capture(action.into, result.stdout.strip())
            kept = json.dumps({str(action.into): result.stdout.strip()})
        self._record(aid, action, text, result.ok, started, exit_code=result.exit_code,
                     detail=None if result.ok else result.tail(), result=kept)
        if action.check and not result.ok:
            raise HostError(action.host, text, result.exit_code, self._mask(result.tail()))
        return result

    def probe(self, probe: Sql | Shell) -> ProbeAnswer:
        """One look, not journaled by itself (a Poll records all its looks as one)."""
        if isinstance(probe, Shell):
            try:
                result = self._host(probe.host).run(probe.bind(self.captured),
                                                    privileged=probe.privileged,
                                                    timeout=probe.timeout, check=False)
            except HostError as exc:
                return ProbeAnswer(error=self._mask(str(exc)))
            return ProbeAnswer(exit_code=result.exit_code, output=result.stdout)
        try:
            self._learn_secrets(probe.params)
            sql, params = probe.bind(self.captured)
            bound = tuple(v.reveal() if isinstance(v, Secret) else v for v in params)
            rows = self._session(probe.host, probe.session).execute(sql, bound)
        except ServerUnreachable as exc:
            return ProbeAnswer(error=self._mask(str(exc)), unreachable=True)
        except DatabaseError as exc:
            return ProbeAnswer(error=self._mask(str(exc)), unreachable=exc.lost_connection)
        return ProbeAnswer(row=rows[0] if rows else None)

    def _poll(self, action: Poll, aid: str) -> ProbeAnswer:
        text = action.render(self.captured)
        started = time.monotonic()
        deadline = self.clock.now() + action.timeout
        count = 0
        while True:
            answer = self.probe(action.probe)
            count += 1
            seen = answer.describe(action.until.fields)
            detail = f"{count} look(s) in {time.monotonic() - started:.1f}s; last: {seen}"
            if action.fail_when is not None and action.fail_when.holds(answer):
                self._record(aid, action, text, False, started, detail=detail)
                raise ResyncError(f"[{action.host}] {action.fail_when.describe()}: "
                                  f"{answer.describe(action.fail_when.fields)}")
            if action.until.holds(answer):
                self._record(aid, action, text, True, started, detail=detail)
                return answer
            if self.clock.now() >= deadline:
                if action.timeout_ok:
                    self._record(aid, action, text, True, started,
                                 detail=f"{detail} (time is up: going on)")
                    return answer
                self._record(aid, action, text, False, started, detail=detail)
                if action.failure:
                    raise ResyncError(f"[{action.host}] {action.failure} ({seen})")
                raise WaitTimeout(f"[{action.host}] timed out after {action.timeout:g}s waiting "
                                  f"until {action.until.describe()}: last: {seen}")
            self.clock.sleep(action.interval)

    def _probe_once(self, action: Probe, aid: str) -> bool:
        text = action.render(self.captured)
        started = time.monotonic()
        answer = self.probe(action.probe)
        verdict = action.condition.holds(answer)
        self.capture(action.into, int(verdict))
        self._record(aid, action, text, True, started, detail=answer.describe(),
                     result=json.dumps({str(action.into): int(verdict)}))
        return verdict

    def _lock_alive(self, action: LockAlive, aid: str) -> None:
        started = time.monotonic()
        if self.holds(action.session):
            self._record(aid, action, action.render(), True, started)
            return
        why = ("it is not held by this process" if action.session not in self._held
               else "its session died")
        self._record(aid, action, action.render(), False, started, detail=why)
        raise ResyncError(f"[{action.host}] the read lock (session '{action.session}') no longer "
                          f"holds: {why}; writes may have happened since the coordinates were "
                          "captured. `resync resume` takes it again where that is safe")

    def _login(self, action: Login, aid: str) -> None:
        started = time.monotonic()
        if self.login is None:
            raise ResyncError("this executor cannot log in as another user")
        try:
            password = EnvSecret(action.password_env).resolve()
            if password not in self.secrets:
                self.secrets.append(password)
            self.login(action.host, action.user, password).close()
        except DatabaseError as exc:
            self._record(aid, action, action.render(), False, started, detail=str(exc))
            raise ResyncError(f"'{action.user}' cannot log in to {action.host}: "
                              f"{self._mask(str(exc))}") from None
        self._record(aid, action, action.render(), True, started)

    def _hold(self, action: HoldLock, aid: str) -> None:
        previous = self._held.pop(action.session, None)
        if previous is not None:
            previous.close()
        session = self.connect(action.host)
        try:
            for j, statement in enumerate(action.statements):
                self._sql(statement, f"{aid}.{j}", session)
        except DatabaseError as exc:
            session.close()
            if exc.code == LOCK_WAIT_TIMEOUT and action.diagnose is not None:
                blockers = self._sql(action.diagnose, f"{aid}.diagnose", kind="diagnose")
                shown = "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in blockers)
                raise LockTimeout(f"could not take {action.what}; no lock is held. "
                                  f"Blocking: {shown or '(none visible)'} ({exc})",
                                  code=exc.code) from None
            raise
        except BaseException:
            session.close()
            raise
        self._held[action.session] = session
        self._held_since[action.session] = time.monotonic()

    def _release(self, action: ReleaseLock, aid: str) -> None:
        started = time.monotonic()
        session = self._held.pop(action.session, None)
        if session is None:
            self._record(aid, action, action.render(), True, started,
                         detail=f"session '{action.session}' is not open in this process: its lock "
                                "ended with the process that took it")
            return
        try:
            if not session.alive():
                self._record(aid, action, action.render(), False, started,
                             detail=f"session '{action.session}' had died: the lock was lost early")
                raise ResyncError(f"[{action.host}] the session holding the lock "
                                  f"('{action.session}') had died before it was released: the "
                                  "server may have accepted writes while it should not have")
            self._sql(Sql(action.host, "UNLOCK TABLES"), aid, session, kind="release")
            since = self._held_since.pop(action.session, None)
            if action.into is not None and since is not None:
                self.capture(action.into, round(time.monotonic() - since, 3))
        finally:
            session.close()

    def _assert(self, action: Assert, aid: str) -> None:
        started = time.monotonic()
        text = action.render(self.captured)
        if action.condition.holds(self.captured):
            self._record(aid, action, text, True, started)
            return
        why = action.condition.explain(self.captured)
        message = f"{action.message} {why}" if why else action.message
        self._record(aid, action, text, False, started, detail=message)
        raise ResyncError(message)

    def _when(self, action: When, aid: str) -> None:
        started = time.monotonic()
        taken = action.condition.holds(self.captured)
        # the decision's text is the plan's; the values it was made on go in the detail
        self._record(aid, action, action.render(), True, started,
                     detail=action.condition.describe(self.captured),
                     result="then" if taken else "else")
        if taken:
            self.run(action.then, f"{aid}.then.")
        else:
            self.run(action.otherwise, f"{aid}.else.")


class ExternalRun:
    """What an External leaf may use (resync.actions.external.ExternalContext)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    @property
    def captured(self) -> Captured:
        return self.executor.captured

    @property
    def clock(self) -> Clock:
        return self.executor.clock

    def aws(self, service: str) -> Any:
        return self.executor.aws_client(service)

    def http_get(self, url: str, timeout: float) -> HttpAnswer:
        return http_get(url, timeout)

    def shell(self, host: str, command: str, *, privileged: bool = False,
              timeout: float | None = None) -> CommandResult:
        return self.executor._host(host).run(command, privileged=privileged, timeout=timeout,
                                             check=False)

    def progress(self, done: int, total: int | None, label: str) -> None:
        self.executor.progress(done, total, label)


def http_get(url: str, timeout: float) -> HttpAnswer:
    """One GET from the controller; any status is an answer, no answer is status None."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return HttpAnswer(response.status, response.read(65536).decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, exc.read(65536).decode(errors="replace"))
    except (urllib.error.URLError, OSError) as exc:
        return HttpAnswer(None, "", str(getattr(exc, "reason", exc)))


class CompositeRun:
    """What a composite action may do: run its own parts, each journaled under its id."""

    def __init__(self, executor: Executor, aid: str, composite: Composite, offset: int = 0) -> None:
        # offset: where its parts start among its parent's, when it is nested in another composite
        self.executor, self.aid, self.offset = executor, aid, offset
        self.parts = composite.parts()

    def _id(self, index: int) -> str:
        return f"{self.aid}.{self.offset + index}"

    @property
    def captured(self) -> Captured:
        return self.executor.captured

    @property
    def clock(self) -> Clock:
        return self.executor.clock

    def capture(self, key: object, value: Value) -> None:
        self.executor.capture(key, value)

    def progress(self, done: int, total: int | None, label: str) -> None:
        self.executor.progress(done, total, label)

    def do(self, index: int) -> Any:
        return self.executor.leaf(self.parts[index], self._id(index))

    def probe(self, probe: Sql | Shell) -> ProbeAnswer:
        return self.executor.probe(probe)

    def start(self, index: int) -> Started:
        """Start a Shell part in the background; its record is written now and completed later."""
        part = self.parts[index]
        assert isinstance(part, Shell)
        ex = self.executor
        text = part.render(ex.captured)
        started = time.monotonic()
        handle = ex._host(part.host).start(part.bind(ex.captured), privileged=part.privileged)
        record = ex._record(self._id(index), part, text, None, started,
                            detail="started in the background")
        return Started(self, record, started, handle, part)

    def record(self, index: int, ok: bool, started: float, detail: str) -> None:
        """The record of a part this composite ran itself (a watch loop)."""
        self.executor._record(self._id(index), self.parts[index],
                              self.parts[index].render(self.captured), ok, started, detail=detail)


@dataclass
class Started:
    run: CompositeRun
    record: int
    started: float
    handle: Background
    part: Shell

    def finish(self, result: CommandResult) -> None:
        ex = self.run.executor
        ex.journal.update(self.record, ok=result.ok, exit_code=result.exit_code,
                          seconds=round(time.monotonic() - self.started, 3),
                          detail=None if result.ok else ex._mask(result.tail()))

    def killed(self, why: str) -> None:
        ex = self.run.executor
        ex.journal.update(self.record, ok=False, seconds=round(time.monotonic() - self.started, 3),
                          detail=why)
