"""A notify command: run on this machine with the event's JSON on its stdin, within a timeout.
Its failure is a warning, never the run's. It does not inherit the database passwords."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Collection

from resync.notify.delivery import payload_json
from resync.run.events import RunEvent

log = logging.getLogger("resync.notify")


class NotifyCommand:
    label = "notify command"

    def __init__(self, command: str, timeout: float, *, hidden_env: Collection[str] = (),
                 mask: Callable[[str], str] = lambda text: text) -> None:
        self.command, self.timeout, self.hidden_env, self.mask = command, timeout, hidden_env, mask

    def deliver(self, event: RunEvent) -> None:
        env = {k: v for k, v in os.environ.items() if k not in self.hidden_env}
        # stderr to a file, stdout nowhere: a pipe held by a forgotten grandchild cannot hang us
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=err, env=env,
                                    start_new_session=True)
            try:
                proc.communicate(payload_json(event).encode(), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: sh and what it started
                proc.wait()
                log.warning("%s (event %s) killed after %g s", self.label, event.name.value,
                            self.timeout)
                return
            if proc.returncode == 0:
                return
            err.seek(0)
            tail = err.read()[-500:].decode(errors="replace").strip()
        log.warning("%s (event %s) exited %s%s", self.label, event.name.value, proc.returncode,
                    f": {self.mask(tail)}" if tail else "")
