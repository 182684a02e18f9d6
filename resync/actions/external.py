"""Leaves that talk to something other than a host's shell or a MySQL server: AWS APIs, HTTP.

An `External` leaf says what it will do as a template (rendered in the plan, journaled as sent,
parameters included) and does it in `perform()` through an `ExternalContext` the executor gives
it: AWS clients (boto3's own credential chain, region and AWS_ENDPOINT_URL; standard retry
mode), an HTTP GET from the controller, a command on a host, the clock. The executor journals
it as one record, like any leaf; its `Outcome` says what to capture.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from resync.actions.types import Captured, Leaf, Value
from resync.model.keys import Key

if TYPE_CHECKING:
    from resync.run.waiting import Clock
    from resync.transport.local import CommandResult


@dataclass(frozen=True)
class HttpAnswer:
    status: int | None  # None: no answer (refused, timed out)
    body: str
    error: str = ""


class ExternalContext(Protocol):
    @property
    def captured(self) -> Captured: ...
    @property
    def clock(self) -> Clock: ...
    def aws(self, service: str) -> Any: ...
    def http_get(self, url: str, timeout: float) -> HttpAnswer: ...
    def shell(self, host: str, command: str, *, privileged: bool = False,
              timeout: float | None = None) -> CommandResult: ...
    def progress(self, done: int, total: int | None, label: str) -> None: ...


@dataclass(frozen=True)
class Outcome:
    ok: bool = True
    detail: str | None = None  # what it saw (journaled)
    values: Mapping[Key, Value] = field(default_factory=dict)  # captured
    error: str | None = None  # when not ok: the message the step fails with


class External(Leaf):
    """Subclasses: frozen dataclasses with `host`, `kind`, `template()` and `perform()`."""

    @abstractmethod
    def perform(self, ctx: ExternalContext) -> Outcome: ...
