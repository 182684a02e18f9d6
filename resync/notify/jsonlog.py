"""`--log-json FILE`: one JSON object per event and line, appended and flushed line by line (a
`tail -f` sees each event as it happens). Events arrive with their secrets already masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

from resync.model.errors import BadInputError
from resync.run.events import RunEvent


class JsonLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            # 0600: the log names hosts, paths and commands (never a secret, but not for all)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise BadInputError(f"cannot open the JSON log {path}: {exc.strerror} (nothing was "
                                "changed)") from None
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def handle(self, event: RunEvent) -> None:
        self._file.write(json.dumps(event.as_dict(), separators=(",", ":"), default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
