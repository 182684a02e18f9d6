"""The notifier: the events a runbook asks for, delivered on one background thread.

A step never waits for a receiver: `handle` only puts the event on a bounded queue (full: the
event is dropped with a warning). At the end of the run `close` waits a bounded time for the
queue to drain, then gives up on what is left (the sinks stop retrying).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from resync.run.events import RunEvent

log = logging.getLogger("resync.notify")
QUEUE_SIZE = 64
DRAIN_SECONDS = 10.0


class Sink(Protocol):
    label: str  # names it in warnings, never its URL

    def deliver(self, event: RunEvent) -> None: ...


def payload(event: RunEvent) -> dict[str, Any]:
    """What a webhook and a command receive: the event, and a Slack-compatible `text` line."""
    return {**event.as_dict(), "text": event.text()}


def payload_json(event: RunEvent) -> str:
    return json.dumps(payload(event), default=str)


class Notifier:
    def __init__(self, sinks: Sequence[Sink], events: Collection[str], *,
                 queue_size: int = QUEUE_SIZE, drain_seconds: float = DRAIN_SECONDS,
                 abandon: threading.Event | None = None) -> None:
        self.sinks, self.events, self.drain_seconds = list(sinks), frozenset(events), drain_seconds
        # set once the drain time is up: sinks stop retrying (their backoff waits on it)
        self.abandon = abandon or threading.Event()
        self.dropped = 0
        self._queue: queue.Queue[RunEvent] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name="resync-notify", daemon=True)
        self._thread.start()

    def handle(self, event: RunEvent) -> None:
        if event.name.value not in self.events:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning("notifications are behind (%d queued): event %s dropped",
                        self._queue.qsize(), event.name.value)

    def _work(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            for sink in self.sinks:
                if self.abandon.is_set():
                    return
                try:
                    sink.deliver(event)
                except Exception as exc:  # a sink's bug must not stop the others
                    log.warning("%s: %s: %s", sink.label, type(exc).__name__, exc)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(self.drain_seconds)
        if self._thread.is_alive():
            self.abandon.set()
            log.warning("notifications: gave up after %g s with %d event(s) undelivered",
                        self.drain_seconds, self._queue.qsize() + 1)
