"""A webhook: the event as a JSON POST (urllib, no extra dependency), retried with exponential
backoff on a network error, a timeout, 429 or 5xx. Its URL is a secret: never printed."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from resync.model.secrets import Secret
from resync.notify.delivery import payload
from resync.run.events import RunEvent

log = logging.getLogger("resync.notify")
BACKOFF = 0.5  # seconds before the first retry, doubled for each next one
Post = Callable[[str, bytes, float], int]  # (url, body, timeout) -> HTTP status
Sleep = Callable[[float], Any]  # a true result: stop retrying (the run is over, time is up)


def http_post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "resync"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Webhook:
    def __init__(self, url: Secret, label: str, *, timeout: float, retries: int, sleep: Sleep,
                 post: Post = http_post, backoff: float = BACKOFF) -> None:
        self.url, self.label = url, label
        self.timeout, self.retries, self.sleep, self.post, self.backoff = (
            timeout, retries, sleep, post, backoff)

    def deliver(self, event: RunEvent) -> None:
        body = json.dumps(payload(event), default=str).encode()
        why = ""
        for attempt in range(self.retries + 1):
            if attempt and self.sleep(self.backoff * 2 ** (attempt - 1)):
                break
            try:
                status = self.post(self.url.reveal(), body, self.timeout)
            # refused, unreachable, timed out, not HTTP
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                why = str(getattr(exc, "reason", exc) or type(exc).__name__)
                continue
            if 200 <= status < 300:
                return
            why = f"HTTP {status}"
            if status != 429 and status < 500:  # the receiver refuses this: asking again won't help
                break
        log.warning("%s: event %s not delivered after %d attempt(s): %s", self.label,
                    event.name.value, attempt + 1, why.replace(self.url.reveal(), str(self.url)))
