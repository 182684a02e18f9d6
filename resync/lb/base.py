"""One interface for every kind of load-balancer membership.

A `Member` does no I/O: each method returns the ACTIONS that do it (AWS calls, HAProxy runtime
commands, waits), which the executor runs and journals, and the plan shows. The instance it acts
for is a `Target` whose values are literal (`--instance i-0abc`, a runbook host) or captured at
run time (`Ref`s to what IMDS answered). What one action learns for the next ones (the hosted
zone's id, the target group's target type, the balancer's timeouts) is captured under the
member's `prefix` (`lb.0.drain_timeout`, ...).

Order of a sequence (see resync.lb.members): prepare() first; deregister() before wait_drained();
register() before wait_healthy(). `drain`/`restore` are the names the run plan uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from resync.actions.types import Leaf, Ref
from resync.lb.params import Text
from resync.model.errors import BadInputError
from resync.model.keys import Key
from resync.model.maintenance import CONTROLLER

LOCAL_HOST = CONTROLLER  # this machine, in the executor's hosts


@dataclass(frozen=True)
class Target:
    """The instance registered or deregistered."""

    instance_id: Text | None = None
    address: Text | None = None  # its private IPv4 address
    availability_zone: Text | None = None

    @classmethod
    def captured(cls, prefix: str = "self") -> Target:
        """The values an identity action captures (IMDS, ec2 describe_instances)."""
        return cls(Ref(Key(f"{prefix}.instance_id")), Ref(Key(f"{prefix}.address")),
                   Ref(Key(f"{prefix}.availability_zone")))


class Member(ABC):
    """A membership of one target in one load balancer (or DNS record, or HAProxy backend)."""

    kind: str

    def __init__(self, target: Target, prefix: str) -> None:
        self.target, self.prefix = target, prefix

    def key(self, name: str) -> Key:
        return Key(f"{self.prefix}.{name}")

    @property
    def state_key(self) -> Key:
        """Where status() captures the membership's state (in_service, draining, absent, ...)."""
        return self.key("state")

    @property
    @abstractmethod
    def label(self) -> str:
        """`elb web-elb`, `haproxy web/web1`: how tables and messages name it."""

    def prepare(self) -> list[Leaf]:
        """Reads the other actions depend on (ids, target types); safe to repeat."""
        return []

    @abstractmethod
    def status(self) -> list[Leaf]: ...

    @abstractmethod
    def register(self) -> list[Leaf]: ...

    @abstractmethod
    def deregister(self) -> list[Leaf]: ...

    @abstractmethod
    def wait_drained(self) -> list[Leaf]:
        """Until the balancer has let the target go, at most its own drain setting."""

    @abstractmethod
    def wait_healthy(self) -> list[Leaf]:
        """Until the balancer sends traffic to the target, at most its health-check settings."""

    def restore(self) -> list[Leaf]:
        return self.register()

    def drain(self) -> list[Leaf]:
        return self.deregister()

    def need(self, value: Text | None, what: str) -> Text:
        if value is None:
            raise BadInputError(f"{self.label}: needs the instance's {what} (give --instance/"
                                "--address, or read them with --self)")
        return value
